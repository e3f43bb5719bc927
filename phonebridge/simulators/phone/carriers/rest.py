"""A fake carrier REST API on loopback — a TEST DOUBLE, not any carrier's service.

The bridge controls calls over the carriers' REST APIs where closing the
stream is not enough (CARRIERS.md §1.1, §2.6, §3.4, §4.4); Telnyx Call Control
even *answers* a call over REST (``actions/answer`` then
``actions/streaming_start``). In tests and with ``phonebridge dial`` the
bridge is pointed at this server instead (``TELNYX_API_URL``,
``PLIVO_API_URL``, ``VONAGE_API_URL``, ``SIGNALWIRE_SPACE_URL``).

Routes, each checking the credentials that carrier checks (401 otherwise) and
answering for the calls the simulator registered (404 for any other id, as the
carriers do for a call that is gone):

- Telnyx ``POST /v2/calls/{id}/actions/{action}`` — ``Authorization: Bearer <API key>``;
- Plivo ``DELETE|POST /v1/Account/{auth_id}/Call/{uuid}/`` — Basic ``auth_id:auth_token``;
- Vonage ``PUT /v1/calls/{uuid}`` — ``Authorization: Bearer <JWT>`` (RS256,
  verified with the application's public key when one is given);
- SignalWire ``POST /api/laml/2010-04-01/Accounts/{project}/Calls/{sid}[.json]``
  — Basic ``project:token``.

Every request is recorded (:attr:`FakeCarrierApi.requests`) and handed to the
registered call's handler, which returns the JSON to answer.

For ``phonebridge <carrier> configure`` it also keeps the applications and
numbers a test puts in :attr:`FakeCarrierApi.resources` (keyed by carrier and
id), with the same credential checks:

- Telnyx ``GET|PATCH /v2/call_control_applications/{id}`` (PATCH needs
  ``application_name`` and ``webhook_event_url``, 422 otherwise);
- Plivo ``POST /v1/Account/{auth_id}/Application/{app_id}/`` (202 ``changed``);
- Vonage ``GET|PUT /v2/applications/{id}`` — Basic ``api_key:api_secret``; a PUT
  replaces the application (``name`` required);
- SignalWire ``GET …/IncomingPhoneNumbers.json?PhoneNumber=`` and
  ``POST …/IncomingPhoneNumbers/{sid}.json``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from phonebridge.simulators.loopback import LoopbackServer


@dataclass(frozen=True, slots=True)
class ApiRequest:
    carrier: str
    method: str
    path: str
    call_id: str
    action: str  # Telnyx: the action; others: hangup | transfer | update
    body: dict[str, Any]
    authorized: bool


Handler = Callable[[ApiRequest], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class ApiCredentials:
    telnyx_api_key: str = ""
    plivo_auth_id: str = ""
    plivo_auth_token: str = ""
    vonage_public_key_pem: str = ""  # empty: any well-formed RS256 JWT is accepted
    signalwire_project_id: str = ""
    signalwire_api_token: str = ""
    vonage_api_key: str = ""
    vonage_api_secret: str = ""


def _basic(request: Request, user: str, password: str) -> bool:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return bool(user) and request.headers.get("authorization") == expected


@dataclass(slots=True)
class FakeCarrierApi:
    credentials: ApiCredentials = field(default_factory=ApiCredentials)
    requests: list[ApiRequest] = field(default_factory=list)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _handlers: dict[tuple[str, str], Handler] = field(default_factory=dict)
    _server: LoopbackServer = field(default_factory=LoopbackServer)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def register(self, carrier: str, call_id: str, handler: Handler) -> None:
        self._handlers[(carrier, call_id)] = handler

    def unregister(self, carrier: str, call_id: str) -> None:
        self._handlers.pop((carrier, call_id), None)

    async def start(self, port: int = 0) -> None:
        await self._server.start(self.app(), port)

    async def stop(self) -> None:
        await self._server.stop()

    async def __aenter__(self) -> FakeCarrierApi:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- routes

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v2/calls/{call_id}/actions/{action}", self._telnyx, methods=["POST"]),
                Route(
                    "/v1/Account/{account}/Call/{call_id}/",
                    self._plivo,
                    methods=["DELETE", "POST"],
                ),
                Route("/v1/calls/{call_id}", self._vonage, methods=["PUT"]),
                Route(
                    "/api/laml/2010-04-01/Accounts/{account}/Calls/{call_id}",
                    self._signalwire,
                    methods=["POST"],
                ),
                Route(
                    "/v2/call_control_applications/{id}",
                    self._telnyx_application,
                    methods=["GET", "PATCH"],
                ),
                Route(
                    "/v1/Account/{account}/Application/{id}/",
                    self._plivo_application,
                    methods=["POST"],
                ),
                Route("/v2/applications/{id}", self._vonage_application, methods=["GET", "PUT"]),
                Route(
                    "/api/laml/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json",
                    self._signalwire_numbers,
                    methods=["GET"],
                ),
                Route(
                    "/api/laml/2010-04-01/Accounts/{account}/IncomingPhoneNumbers/{sid}.json",
                    self._signalwire_number,
                    methods=["POST"],
                ),
            ]
        )

    # ---------------------------------------------------------------- configure routes

    def _resource(
        self, request: Request, carrier: str, key: str, authorized: bool, body: dict[str, Any]
    ) -> dict[str, Any] | Response:
        """The stored resource, or the refusal the carrier would answer."""
        action = "configure" if request.method != "GET" else "read"
        self.requests.append(
            ApiRequest(carrier, request.method, request.url.path, key, action, body, authorized)
        )
        if not authorized:
            return JSONResponse({"errors": [{"title": "Unauthorized"}]}, status_code=401)
        found = self.resources.get((carrier, key))
        if found is None:
            return JSONResponse({"errors": [{"title": "Not found"}]}, status_code=404)
        return found

    async def _telnyx_application(self, request: Request) -> Response:
        key = self.credentials.telnyx_api_key
        authorized = bool(key) and request.headers.get("authorization") == f"Bearer {key}"
        body = await self._json(request) if request.method == "PATCH" else {}
        found = self._resource(request, "telnyx", request.path_params["id"], authorized, body)
        if isinstance(found, Response):
            return found
        if request.method == "PATCH":
            if not body.get("application_name") or not body.get("webhook_event_url"):
                return JSONResponse({"errors": [{"title": "Missing field"}]}, status_code=422)
            found.update(body)
        return JSONResponse({"data": found})

    async def _plivo_application(self, request: Request) -> Response:
        c = self.credentials
        authorized = _basic(request, c.plivo_auth_id, c.plivo_auth_token) and (
            request.path_params["account"] == c.plivo_auth_id
        )
        body = await self._json(request)
        found = self._resource(request, "plivo", request.path_params["id"], authorized, body)
        if isinstance(found, Response):
            return found
        found.update(body)
        return JSONResponse({"message": "changed", "api_id": "fake"}, status_code=202)

    async def _vonage_application(self, request: Request) -> Response:
        c = self.credentials
        authorized = _basic(request, c.vonage_api_key, c.vonage_api_secret)
        body = await self._json(request) if request.method == "PUT" else {}
        found = self._resource(request, "vonage", request.path_params["id"], authorized, body)
        if isinstance(found, Response):
            return found
        if request.method == "PUT":
            if not body.get("name"):
                return JSONResponse({"title": "Bad Request"}, status_code=400)
            found.clear()  # a PUT replaces the application
            found.update({"id": request.path_params["id"], **body})
        return JSONResponse(found)

    def _signalwire_authorized(self, request: Request) -> bool:
        c = self.credentials
        return _basic(request, c.signalwire_project_id, c.signalwire_api_token) and (
            request.path_params["account"] == c.signalwire_project_id
        )

    async def _signalwire_numbers(self, request: Request) -> Response:
        authorized = self._signalwire_authorized(request)
        number = request.query_params.get("PhoneNumber", "")
        self.requests.append(
            ApiRequest("signalwire", "GET", request.url.path, number, "read", {}, authorized)
        )
        if not authorized:
            return JSONResponse({"message": "Unauthorized"}, status_code=401)
        numbers = [
            value
            for (carrier, _), value in self.resources.items()
            if carrier == "signalwire" and value.get("phone_number") == number
        ]
        return JSONResponse({"incoming_phone_numbers": numbers})

    async def _signalwire_number(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        authorized = self._signalwire_authorized(request)
        found = self._resource(request, "signalwire", request.path_params["sid"], authorized, form)
        if isinstance(found, Response):
            return found
        found.update(
            {"voice_url": form.get("VoiceUrl", ""), "voice_method": form.get("VoiceMethod", "")}
        )
        return JSONResponse(found)

    async def _dispatch(self, request: ApiRequest) -> Response:
        self.requests.append(request)
        if not request.authorized:
            return JSONResponse({"errors": [{"title": "Unauthorized"}]}, status_code=401)
        handler = self._handlers.get((request.carrier, request.call_id))
        if handler is None:
            return JSONResponse({"errors": [{"title": "Call not found"}]}, status_code=404)
        answer = await handler(request)
        status = 204 if request.carrier == "plivo" and request.method == "DELETE" else 200
        return Response(status_code=204) if status == 204 else JSONResponse(answer)

    async def _json(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return {"_invalid": raw.decode(errors="replace")}
        return body if isinstance(body, dict) else {"_invalid": body}

    async def _telnyx(self, request: Request) -> Response:
        key = self.credentials.telnyx_api_key
        authorized = bool(key) and request.headers.get("authorization") == f"Bearer {key}"
        return await self._dispatch(
            ApiRequest(
                "telnyx",
                "POST",
                request.url.path,
                request.path_params["call_id"],
                request.path_params["action"],
                await self._json(request),
                authorized,
            )
        )

    async def _plivo(self, request: Request) -> Response:
        c = self.credentials
        authorized = _basic(request, c.plivo_auth_id, c.plivo_auth_token) and (
            request.path_params["account"] == c.plivo_auth_id
        )
        body = dict((await request.form()).items()) if request.method == "POST" else {}
        action = "hangup" if request.method == "DELETE" else "transfer"
        return await self._dispatch(
            ApiRequest(
                "plivo",
                request.method,
                request.url.path,
                request.path_params["call_id"],
                action,
                {k: str(v) for k, v in body.items()},
                authorized,
            )
        )

    async def _vonage(self, request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        authorized = scheme.lower() == "bearer" and bool(token)
        if authorized:
            try:
                if self.credentials.vonage_public_key_pem:
                    jwt.decode(
                        token,
                        self.credentials.vonage_public_key_pem,
                        algorithms=["RS256"],
                        options={"verify_aud": False},
                    )
                elif jwt.get_unverified_header(token).get("alg") != "RS256":
                    authorized = False
            except jwt.PyJWTError:
                authorized = False
        body = await self._json(request)
        action = body.get("action")
        return await self._dispatch(
            ApiRequest(
                "vonage",
                "PUT",
                request.url.path,
                request.path_params["call_id"],
                action if isinstance(action, str) else "",
                body,
                authorized,
            )
        )

    async def _signalwire(self, request: Request) -> Response:
        c = self.credentials
        authorized = _basic(request, c.signalwire_project_id, c.signalwire_api_token) and (
            request.path_params["account"] == c.signalwire_project_id
        )
        form = {k: str(v) for k, v in (await request.form()).items()}
        status = form.get("Status", "")
        action = (
            "hangup"
            if status in ("completed", "canceled")
            else "transfer"
            if "Url" in form or "Twiml" in form
            else "update"
        )
        return await self._dispatch(
            ApiRequest(
                "signalwire",
                "POST",
                request.url.path,
                request.path_params["call_id"].removesuffix(".json"),
                action,
                dict(form),
                authorized,
            )
        )
