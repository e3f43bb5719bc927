"""TEST DOUBLE: Plivo's Call API on loopback, with callees that answer — not Plivo's service.

Serves what :class:`~phonebridge.telephony.plivo.dialer.PlivoDialer` and the
in-call REST control (``carrier_rest.PlivoApi``) use, as Plivo documents it,
under ``/v1/Account/{auth_id}`` with HTTP Basic ``auth_id:auth_token`` (401
otherwise):

- ``POST Call/`` (JSON as Plivo's SDK sends it, or a form): ``from``, ``to``,
  ``answer_url`` required (400 otherwise); 201 ``{"message": "call fired",
  "request_uuid"}`` — the request UUID is the call's ``CallUUID``;
- ``GET Call/?status=live|queued``: ``{"calls": [uuid, …]}``;
  ``GET Call/{uuid}/?status=live`` and ``GET Request/{uuid}/``: one live or
  queued call (404 once it has moved on); ``GET Call/`` with ``to_number``,
  ``from_number``, ``call_direction``, ``end_time__gte``, ``limit``/``offset``:
  the call detail records of ended calls; ``GET Call/{uuid}/``: one record;
- ``DELETE Call/{uuid}/``: cancels a queued or ringing call (``cancel``) or
  hangs up a live one (204); ``POST Call/{uuid}/`` with ``legs=aleg``:
  transfers it (the phone simulator fetches ``aleg_url``).

Each created call rings its :class:`~phonebridge.simulators.twilio_api.Callee`:
a signed ``ring_url`` request, then the terminal ``hangup_url`` request
(``CallStatus`` busy / no-answer / failed, with a ``HangupCauseName``), or
for an answered call the signed ``answer_url`` request run by the Plivo phone
simulator (:class:`~phonebridge.simulators.phone.carriers.plivo.PlivoFlavour`:
``<Stream>`` socket, DTMF, what was said), with ``Machine=true`` on
``machine_detection_url`` for a machine (Plivo's detection reports a machine,
no beep), and ``hangup_url`` ``completed`` when it ends. Every callback is
V3-signed with the auth token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from phonebridge.simulators.fake_api import Callee, LoopbackFakeApi, alongside, callee_phone
from phonebridge.simulators.phone.carriers.plivo import PlivoFlavour
from phonebridge.simulators.phone.carriers.rest import ApiRequest, FakeCarrierApi, Handler
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.plivo.signature import (
    MAIN_ACCOUNT_SIGNATURE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    sign,
)

# The callee's audio is 16 kHz; the stream's rate is what <Stream contentType> asks.
_CAUSES = {
    "busy": ("busy", "Busy Line", 3010),
    "no-answer": ("no-answer", "No Answer", 3020),
    "failed": ("failed", "Invalid Destination Address", 2000),
    "cancel": ("cancel", "Canceled", 1000),
    "completed": ("completed", "Normal Hangup", 4000),
}


def _number(text: str) -> str:
    return "+" + text.lstrip("+")


class _Registry(FakeCarrierApi):
    """The phone simulator registers its REST handler here (never served itself)."""

    def handler(self, call_uuid: str) -> Handler | None:
        return self._handlers.get(("plivo", call_uuid))


@dataclass(slots=True)
class FakePlivoCall:
    uuid: str
    to: str
    from_: str
    body: dict[str, Any]
    callee: Callee
    created: datetime
    status: str = "queued"  # queued, ringing, in-progress, then a terminal CallStatus
    cause: str = ""
    answered: datetime | None = None
    ended: datetime | None = None
    callbacks: list[tuple[str, dict[str, str], int | None]] = field(default_factory=list)
    report: DialReport | None = None

    @property
    def machine_detection(self) -> str | None:
        value = self.body.get("machine_detection")
        return None if value is None else str(value)

    def live_json(self) -> dict[str, Any]:
        return {
            "call_uuid": self.uuid,
            "request_uuid": self.uuid,
            "call_status": self.status,
            "direction": "outbound",
            "from": self.from_.lstrip("+"),
            "to": self.to.lstrip("+"),
            "caller_name": "",
        }

    def record(self) -> dict[str, Any]:
        assert self.ended is not None
        return {
            "call_uuid": self.uuid,
            "call_direction": "outbound",
            "from_number": self.from_,
            "to_number": self.to,
            "answer_time": self.answered.strftime("%Y-%m-%d %H:%M:%S+00:00")
            if self.answered
            else None,
            "end_time": self.ended.strftime("%Y-%m-%d %H:%M:%S+00:00"),
            "hangup_cause_name": self.cause,
            "call_state": "ANSWER" if self.answered else self.status.upper(),
        }


class FakePlivoApi(LoopbackFakeApi[FakePlivoCall]):
    """``async with FakePlivoApi(...) as api:`` ``api.url`` is ``PLIVO_API_URL``."""

    def __init__(
        self,
        *,
        auth_id: str,
        auth_token: str,
        bridge_public_url: str,
        bridge_local_url: str,
        callees: dict[str, Callee] | None = None,
    ) -> None:
        super().__init__(
            bridge_public_url=bridge_public_url, bridge_local_url=bridge_local_url, callees=callees
        )
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.refuse_create: int | None = None  # an HTTP status to answer creates with
        self._registry = _Registry()

    # -- HTTP -----------------------------------------------------------------

    def _refusal(self, request: Request) -> Response | None:
        self.note(request)
        expected = (
            "Basic " + base64.b64encode(f"{self.auth_id}:{self.auth_token}".encode()).decode()
        )
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "authentication failed"}, status_code=401)
        if request.path_params["account"] != self.auth_id:
            return JSONResponse({"error": "not found"}, status_code=404)
        return None

    async def _collection(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if request.method == "GET":
            return self._list(request)
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(raw or b"{}")
        else:
            body = {k: str(v) for k, v in (await request.form()).items()}
        if self.refuse_create is not None:
            return JSONResponse({"error": "refused by the test"}, status_code=self.refuse_create)
        for name in ("from", "to", "answer_url"):
            if not body.get(name):
                return JSONResponse({"error": f"{name} is required"}, status_code=400)
        call_uuid = str(uuid.uuid4())
        to = _number(str(body["to"]))
        call = FakePlivoCall(
            uuid=call_uuid,
            to=to,
            from_=_number(str(body["from"])),
            body=body,
            callee=self.callee(to),
            created=datetime.now(UTC),
        )
        self.start_call(call_uuid, call, self._run(call))
        return JSONResponse(
            {"api_id": str(uuid.uuid4()), "message": "call fired", "request_uuid": call_uuid},
            status_code=201,
        )

    def _list(self, request: Request) -> Response:
        query = request.query_params
        state = query.get("status")
        if state == "live":
            live = [c.uuid for c in self.calls.values() if c.status in ("ringing", "in-progress")]
            return JSONResponse({"api_id": "fake", "calls": live})
        if state == "queued":
            queued = [c.uuid for c in self.calls.values() if c.status == "queued"]
            return JSONResponse({"api_id": "fake", "calls": queued})
        since = query.get("end_time__gte")
        after = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
        found = [
            c.record()
            for c in self.calls.values()
            if c.ended is not None
            and (not query.get("to_number") or c.to.lstrip("+").startswith(query["to_number"]))
            and (
                not query.get("from_number") or c.from_.lstrip("+").startswith(query["from_number"])
            )
            and (after is None or c.ended.replace(microsecond=0) >= after)
        ]
        limit, offset = int(query.get("limit", "20")), int(query.get("offset", "0"))
        page = found[offset : offset + limit]
        more = offset + limit < len(found)
        return JSONResponse(
            {
                "api_id": "fake",
                "meta": {
                    "limit": limit,
                    "offset": offset,
                    "total_count": len(found),
                    "next": f"{request.url.path}?offset={offset + limit}" if more else None,
                    "previous": None,
                },
                "objects": page,
            }
        )

    async def _one(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.path_params["uuid"])
        if call is None:
            return JSONResponse({"error": "call not found"}, status_code=404)
        if request.method == "GET":
            if request.query_params.get("status") == "live":
                if call.status not in ("ringing", "in-progress"):
                    return JSONResponse({"error": "not a live call"}, status_code=404)
                return JSONResponse(call.live_json())
            if call.ended is None:
                return JSONResponse({"error": "no record yet"}, status_code=404)
            return JSONResponse(call.record())
        body = {k: str(v) for k, v in (await request.form()).items()}
        action = "hangup" if request.method == "DELETE" else "transfer"
        handler = self._registry.handler(call.uuid)
        if call.status == "in-progress" and handler is not None:
            await handler(
                ApiRequest("plivo", request.method, request.url.path, call.uuid, action, body, True)
            )
        elif action == "hangup" and call.status in ("queued", "ringing"):
            await self.stop_call(call.uuid)
            await self._end(call, "cancel")
        elif call.status != "in-progress":
            return JSONResponse({"error": "call not found"}, status_code=404)
        if action == "hangup":
            return Response(status_code=204)
        return JSONResponse({"message": "call transferred", "api_id": "fake"}, status_code=202)

    async def _request(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.path_params["uuid"])
        if call is None or call.status != "queued":
            return JSONResponse({"error": "not a queued request"}, status_code=404)
        return JSONResponse(call.live_json())

    # -- the call -------------------------------------------------------------

    def _params(self, call: FakePlivoCall, status: str) -> dict[str, str]:
        return {
            "CallUUID": call.uuid,
            "RequestUUID": call.uuid,
            "ALegUUID": call.uuid,
            "ALegRequestUUID": call.uuid,
            "From": call.from_.lstrip("+"),
            "To": call.to.lstrip("+"),
            "Direction": "outbound",
            "CallStatus": status,
        }

    async def _post(self, call: FakePlivoCall, kind: str, params: dict[str, str]) -> None:
        url = call.body.get(f"{kind}_url")
        if not url:
            return
        nonce = uuid.uuid4().hex
        signature = sign(self.auth_token, "POST", str(url), params, nonce)
        headers = {
            SIGNATURE_HEADER: signature,
            MAIN_ACCOUNT_SIGNATURE_HEADER: signature,
            NONCE_HEADER: nonce,
        }
        call.callbacks.append((kind, params, await self.callback(str(url), headers, data=params)))

    async def _end(self, call: FakePlivoCall, status: str) -> None:
        if call.ended is not None:
            return
        status, cause, code = _CAUSES[status]
        call.status, call.cause, call.ended = status, cause, datetime.now(UTC)
        params = self._params(call, status)
        params.update(
            {
                "Event": "Hangup",
                "HangupCause": cause,
                "HangupCauseName": cause,
                "HangupCauseCode": str(code),
                "HangupSource": "Callee" if status == "completed" else "Carrier",
                "Duration": str(
                    int((call.ended - call.answered).total_seconds()) if call.answered else 0
                ),
            }
        )
        await self._post(call, "hangup", params)

    async def _run(self, call: FakePlivoCall) -> None:
        callee = call.callee
        await asyncio.sleep(0.01)
        call.status = "ringing"
        await self._post(call, "ring", {**self._params(call, "ringing"), "Event": "Ring"})
        ring_timeout = float(call.body.get("ring_timeout", 120))
        await asyncio.sleep(min(callee.ring, ring_timeout))
        if callee.kind in ("no-answer", "busy", "failed"):
            await self._end(call, callee.kind)
            return
        call.status = "in-progress"
        call.answered = datetime.now(UTC)
        async with alongside(self._machine(call)):
            call.report = await self._connect(call)
        await self._end(call, "completed")

    async def _connect(self, call: FakePlivoCall) -> DialReport:
        flavour = PlivoFlavour(
            self.auth_id,
            self.auth_token,
            self._registry,
            call_uuid=call.uuid,
            answer_url=str(call.body["answer_url"]),
        )
        report = DialReport(
            call_sid=call.uuid,
            account_sid=self.auth_id,
            stream_sid="",
            to=call.to,
            from_=call.from_,
            carrier="plivo",
        )
        return await callee_phone(flavour, call.callee, self.routes, report, send_stop=False).run()

    async def _machine(self, call: FakePlivoCall) -> None:
        """Plivo's asynchronous detection: ``Machine=true`` once it has heard a machine."""
        if call.callee.kind != "machine" or not call.body.get("machine_detection_url"):
            return
        if str(call.machine_detection).lower() not in ("true", "hangup"):
            return
        await asyncio.sleep(0.3)
        params = self._params(call, "in-progress")
        params.update(
            {
                "Machine": "true",
                "IfMachine": "hangup" if call.machine_detection == "hangup" else "continue",
                "Event": "MachineDetection",
            }
        )
        await self._post(call, "machine_detection", params)

    # -- lifetime -------------------------------------------------------------

    def routes_served(self) -> list[BaseRoute]:
        prefix = "/v1/Account/{account}"
        return [
            Route(prefix + "/Call/", self._collection, methods=["GET", "POST"]),
            Route(prefix + "/Call/{uuid}/", self._one, methods=["GET", "POST", "DELETE"]),
            Route(prefix + "/Request/{uuid}/", self._request, methods=["GET"]),
        ]


__all__ = ["Callee", "FakePlivoApi", "FakePlivoCall"]
