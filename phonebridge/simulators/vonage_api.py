"""TEST DOUBLE: Vonage's Voice API calls resource on loopback, with callees that answer.

What phonebridge uses of ``/v1/calls``, as Vonage documents it (and as the
``vonage-python-sdk`` models it): ``POST /v1/calls`` (JSON ``to``, ``from``,
``answer_url``, ``answer_method``, ``event_url``, ``event_method``,
``ringing_timer``, ``advanced_machine_detection``; 201 with ``uuid``,
``status``, ``direction``, ``conversation_uuid``), ``GET /v1/calls/{uuid}``,
``PUT /v1/calls/{uuid}`` (``{"action": "hangup"}``; 204) and ``GET /v1/calls``
(``date_start``, ``page_size``, ``record_index``, ``order``; HAL pages with
``_embedded.calls`` and ``_links.next``). Every request must carry
``Authorization: Bearer`` an RS256 JWT of the application (``application_id``,
``iat``, ``jti``, ``exp``), verified with the application's public key.

Each created call rings its :class:`~phonebridge.simulators.twilio_api.Callee`
and posts Vonage's signed events (HS256 JWT with the signature secret and the
body's ``payload_hash``) to the call's ``event_url``: ``started``,
``ringing``, then ``answered`` or the end of an unanswered call (``timeout``
for no-answer, ``busy``, ``failed``). An answered call is run by the Vonage
phone simulator (:class:`~phonebridge.simulators.phone.carriers.vonage.VonageFlavour`):
its ``answer_url`` is fetched (GET, signed) and the NCCO's ``connect`` to a
``websocket`` opened; the ``disconnected`` NCCO after the stream is run and
recorded (``talk`` → ``said``). Advanced machine detection (mode ``default``,
asynchronous) posts ``human``, or ``machine`` at once and ``machine`` with
``sub_state: beep_start`` after the greeting and its beep. ``completed`` ends
every answered call.

Unverified against the real API (documented nowhere we could read): what
``PUT`` answers for a call that has already ended (here: 204, nothing done)
and for a hang-up while ringing (here: the call ends ``cancelled``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from phonebridge.simulators.fake_api import Callee, LoopbackFakeApi, alongside, callee_phone
from phonebridge.simulators.phone.carriers.base import CarrierCall, token
from phonebridge.simulators.phone.carriers.vonage import VonageFlavour
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.vonage.signature import sign

# The callee's leg is 16 kHz; the stream's rate is what the NCCO content-type asks for.
TERMINAL = frozenset(
    {"completed", "busy", "cancelled", "failed", "rejected", "timeout", "unanswered"}
)
_UNANSWERED = {"no-answer": "timeout", "busy": "busy", "failed": "failed"}
BEHAVIORS = ("continue", "hangup")
MODES = ("default", "detect", "detect_beep")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(slots=True)
class FakeVonageCall:
    uuid: str
    conversation_uuid: str
    to: str  # digits, as Vonage writes numbers
    from_: str
    answer_url: str
    event_url: str
    ringing_timer: int
    machine_detection: dict[str, Any] | None
    callee: Callee
    created: datetime
    status: str = "started"
    events: list[tuple[str, dict[str, Any], int | None]] = field(default_factory=list)
    report: DialReport | None = None
    phone: CarrierCall | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)
    duration: int = 0

    def json(self) -> dict[str, Any]:
        return {
            "_links": {"self": {"href": f"/v1/calls/{self.uuid}"}},
            "uuid": self.uuid,
            "conversation_uuid": self.conversation_uuid,
            "to": {"type": "phone", "number": self.to},
            "from": {"type": "phone", "number": self.from_},
            "status": self.status,
            "direction": "outbound",
            "start_time": _stamp(self.created),
            **({"duration": str(self.duration)} if self.status == "completed" else {}),
        }


class FakeVonageApi(LoopbackFakeApi[FakeVonageCall]):
    """``async with FakeVonageApi(...) as api:`` ``api.url`` is ``VONAGE_API_URL``."""

    def __init__(
        self,
        *,
        application_id: str,
        public_key_pem: str,
        signature_secret: str,
        api_key: str,
        bridge_public_url: str,
        bridge_local_url: str,
        callees: dict[str, Callee] | None = None,
    ) -> None:
        super().__init__(
            bridge_public_url=bridge_public_url, bridge_local_url=bridge_local_url, callees=callees
        )
        self.application_id = application_id
        self.public_key = public_key_pem
        self.secret = signature_secret
        self.api_key = api_key
        self.page_limit = 100  # the largest page served (tests lower it to see paging)
        self.refuse_create: int | None = None  # an HTTP status to answer creates with

    # -- HTTP -----------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        try:
            claims = jwt.decode(
                value.strip(),
                self.public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "jti", "exp"]},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("application_id") == self.application_id)

    @staticmethod
    def _error(status: int, title: str, detail: str = "") -> JSONResponse:
        return JSONResponse(
            {"type": "https://developer.nexmo.com/api-errors", "title": title, "detail": detail},
            status_code=status,
        )

    async def _calls(self, request: Request) -> Response:
        self.note(request)
        if not self._authorised(request):
            return self._error(401, "Unauthorized", "Invalid token")
        if request.method == "GET":
            return self._list(request)
        if self.refuse_create is not None:
            return self._error(self.refuse_create, "Refused by the test")
        try:
            doc = json.loads(await request.body())
        except ValueError:
            return self._error(400, "Bad Request", "body is not JSON")
        problem = _create_problem(doc)
        if problem is not None:
            return self._error(400, "Bad Request", problem)
        to = str(doc["to"][0]["number"])
        call = FakeVonageCall(
            uuid=str(uuid.uuid4()),
            conversation_uuid="CON-" + str(uuid.uuid4()),
            to=to,
            from_=str(doc["from"]["number"]),
            answer_url=str(doc["answer_url"][0]),
            event_url=str(doc["event_url"][0]),
            ringing_timer=int(doc.get("ringing_timer", 60)),
            machine_detection=doc.get("advanced_machine_detection"),
            callee=self.callee("+" + to),
            created=datetime.now(UTC),
        )
        self.start_call(call.uuid, call, self._run(call))
        return JSONResponse(
            {
                "uuid": call.uuid,
                "status": "started",
                "direction": "outbound",
                "conversation_uuid": call.conversation_uuid,
            },
            status_code=201,
        )

    def _list(self, request: Request) -> Response:
        query = request.query_params
        try:
            size = min(int(query.get("page_size", "10")), self.page_limit)
            index = int(query.get("record_index", "0"))
            since = (
                datetime.fromisoformat(query["date_start"].replace("Z", "+00:00"))
                if "date_start" in query
                else None
            )
        except ValueError as exc:
            return self._error(400, "Bad Request", str(exc))
        found = [c for c in self.calls.values() if since is None or c.created >= since]
        found.sort(key=lambda c: c.created, reverse=query.get("order", "asc") == "desc")
        page = found[index : index + size]
        links: dict[str, Any] = {
            "self": {"href": f"/v1/calls?page_size={size}&record_index={index}"}
        }
        if index + size < len(found):
            links["next"] = {"href": f"/v1/calls?page_size={size}&record_index={index + size}"}
        return JSONResponse(
            {
                "count": len(found),
                "page_size": size,
                "record_index": index,
                "_links": links,
                "_embedded": {"calls": [c.json() for c in page]},
            }
        )

    async def _call(self, request: Request) -> Response:
        self.note(request)
        if not self._authorised(request):
            return self._error(401, "Unauthorized", "Invalid token")
        call = self.calls.get(request.path_params["uuid"])
        if call is None:
            return self._error(404, "Not Found", "call not found")
        if request.method == "GET":
            return JSONResponse(call.json())
        try:
            doc = json.loads(await request.body())
        except ValueError:
            return self._error(400, "Bad Request", "body is not JSON")
        if not isinstance(doc, dict) or doc.get("action") != "hangup":
            return self._error(400, "Bad Request", "only the hangup action is simulated")
        call.updates.append(doc)
        if call.status in TERMINAL:
            return Response(status_code=204)
        if call.phone is not None:
            call.phone.hang_up_remotely("hangup")  # the stream ends; completed follows
        else:
            await self.stop_call(call.uuid)
            await self._event(call, "cancelled")
        return Response(status_code=204)

    # -- the call -------------------------------------------------------------

    async def _event(self, call: FakeVonageCall, status: str, **extra: Any) -> None:
        if status not in ("human", "machine"):
            call.status = status
        doc = {
            "uuid": call.uuid,
            "conversation_uuid": call.conversation_uuid,
            "from": call.from_,
            "to": call.to,
            "status": status,
            "direction": "outbound",
            "timestamp": _stamp(datetime.now(UTC)),
            **extra,
        }
        body = json.dumps(doc).encode()
        signed = sign(self.secret, time.time(), api_key=self.api_key, jti=token(), body=body)
        headers = {"content-type": "application/json", "authorization": f"Bearer {signed}"}
        answer = await self.callback(call.event_url, headers, content=body)
        call.events.append((status, doc, answer))

    async def _run(self, call: FakeVonageCall) -> None:
        callee = call.callee
        await self._event(call, "started")
        await self._event(call, "ringing")
        await asyncio.sleep(callee.ring)
        if callee.kind in _UNANSWERED:
            await self._event(call, _UNANSWERED[callee.kind])
            return
        await self._event(call, "answered")
        started = asyncio.get_running_loop().time()
        try:
            async with alongside(self._amd(call)):
                call.report = await self._connect(call)
        finally:
            call.duration = int(asyncio.get_running_loop().time() - started + 0.5)
        await self._event(call, "completed", duration=str(call.duration))

    async def _connect(self, call: FakeVonageCall) -> DialReport:
        flavour = VonageFlavour(
            self.secret,
            self.api_key,
            None,
            call_uuid=call.uuid,
            conversation_uuid=call.conversation_uuid,
            answer_url=call.answer_url,
            completed_event=False,  # this API sends the call's events
        )
        report = DialReport(
            call_sid=call.uuid,
            account_sid=self.api_key,
            stream_sid="",
            to="+" + call.to,
            from_="+" + call.from_,
            carrier="vonage",
        )
        call.phone = callee_phone(flavour, call.callee, self.routes, report)
        return await call.phone.run()

    async def _amd(self, call: FakeVonageCall) -> None:
        detection = call.machine_detection
        if not detection:
            return
        callee = call.callee
        await asyncio.sleep(0.3)
        if callee.kind == "human":
            await self._event(call, "human")
            return
        await self._event(call, "machine")
        if detection.get("mode", "default") in ("default", "detect_beep"):
            await asyncio.sleep(max(0.0, callee.greeting + 0.3 + 0.1 - 0.3))  # greeting, beep
            await self._event(call, "machine", sub_state="beep_start")

    # -- lifetime -------------------------------------------------------------

    def routes_served(self) -> list[BaseRoute]:
        return [
            Route("/v1/calls", self._calls, methods=["GET", "POST"]),
            Route("/v1/calls/{uuid}", self._call, methods=["GET", "PUT"]),
        ]


def _create_problem(doc: object) -> str | None:
    """Why a create body is not one Vonage takes (the fields phonebridge sends)."""
    if not isinstance(doc, dict):
        return "body is not a JSON object"
    to = doc.get("to")
    if (
        not isinstance(to, list)
        or len(to) != 1
        or not isinstance(to[0], dict)
        or to[0].get("type") != "phone"
        or not str(to[0].get("number", "")).isdigit()
    ):
        return "to must be one phone endpoint with a number of digits (no +)"
    from_ = doc.get("from")
    if (
        not isinstance(from_, dict)
        or from_.get("type") != "phone"
        or not str(from_.get("number", "")).isdigit()
    ):
        return "from must be a phone endpoint with a number of digits (no +)"
    for name in ("answer_url", "event_url"):
        urls = doc.get(name)
        if not isinstance(urls, list) or len(urls) != 1 or not isinstance(urls[0], str):
            return f"{name} must be an array of one URL"
    if doc.get("answer_method", "GET") not in ("GET", "POST"):
        return "answer_method must be GET or POST"
    if doc.get("answer_method", "GET") != "GET":
        return "this double serves answer_method GET only"
    if doc.get("event_method", "POST") != "POST":
        return "this double serves event_method POST only"
    ringing = doc.get("ringing_timer", 60)
    if not isinstance(ringing, int) or not 1 <= ringing <= 120:
        return "ringing_timer must be 1..120"
    detection = doc.get("advanced_machine_detection")
    if detection is not None:
        if not isinstance(detection, dict):
            return "advanced_machine_detection must be an object"
        if detection.get("behavior") not in BEHAVIORS or detection.get("mode") not in MODES:
            return "advanced_machine_detection needs behavior and mode"
        beep = detection.get("beep_timeout", 45)
        if not isinstance(beep, int) or not 45 <= beep <= 120:
            return "beep_timeout must be 45..120"
        if detection.get("behavior") != "continue":
            return "this double simulates behavior continue only"
    return None
