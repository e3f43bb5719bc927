"""TEST DOUBLE: Telnyx Call Control's dial API on loopback, with callees that answer.

The bridge's :class:`~phonebridge.telephony.telnyx.dialer.TelnyxDialer` (and the
inbound path's :class:`~phonebridge.telephony.carrier_rest.TelnyxApi`) talk to
it through ``TELNYX_API_URL``. ``Authorization: Bearer <API key>`` on every
request (401 otherwise). It serves what phonebridge uses:

- ``POST /v2/calls`` (dial): JSON ``connection_id`` (must be this one: 422),
  ``to``, ``from``, ``webhook_url`` (422 without them), ``timeout_secs``,
  ``answering_machine_detection``, ``client_state``, ``command_id`` (a second
  dial with the same one answers the first call and rings nobody); 200 with
  ``data.call_control_id`` (``v3:…``), ``call_leg_id``, ``call_session_id``,
  ``is_alive: false``.
- ``GET /v2/calls/{call_control_id}``: ``is_alive``, ``call_duration``,
  ``client_state``, ``start_time``/``end_time`` (404 for an unknown id).
- ``GET /v2/connections/{id}/active_calls`` (paged ``page[number]``/``[size]``):
  the live calls, ringing ones included (*the double's choice: unverified*).
- ``GET /v2/call_events`` filtered by ``filter[connection_id]``, ``[to]``,
  ``[from]``, ``[leg_id]``, ``[name]``, ``[type]``, ``[occurred_at][gte]``:
  the ``call.hangup`` webhook of each ended call. Telnyx documents
  ``metadata`` only as "the raw event": here it is ``{"event": {"event_type",
  "payload"}}`` (*the double's guess*).
- ``POST /v2/calls/{id}/actions/{action}``: the phone simulator's fake REST
  control (:class:`~phonebridge.simulators.phone.carriers.rest.FakeCarrierApi`),
  so an answered call is commanded exactly as an inbound one; while it rings,
  ``hangup`` cancels it (``originator_cancel``).

Each call rings its :class:`~phonebridge.simulators.twilio_api.Callee` and sends
what Telnyx sends to the dial's ``webhook_url``, Ed25519-signed:
``call.initiated``; then ``call.hangup`` with ``timeout`` (no answer),
``user_busy`` or ``call_rejected``; or ``call.answered``, after which the
Telnyx phone simulator
(:class:`~phonebridge.simulators.phone.carriers.telnyx.TelnyxFlavour`) waits
for ``streaming_start`` and runs the media socket (DTMF, ``speak`` recorded in
``said``, ``call.speak.ended``, ``call.hangup`` ``normal_clearing``). Machine
detection: ``call.machine.detection.ended`` (``human`` / ``machine``) 0.3 s
after the answer, and with ``detect_beep`` ``call.machine.greeting.ended``
``beep_detected`` after the greeting's beep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from phonebridge.simulators.fake_api import Callee, LoopbackFakeApi, alongside, callee_phone
from phonebridge.simulators.phone.carriers.base import CarrierCall, StreamPlan, token
from phonebridge.simulators.phone.carriers.rest import ApiCredentials, ApiRequest, FakeCarrierApi
from phonebridge.simulators.phone.carriers.telnyx import TelnyxFlavour
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.telnyx.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

# The callee's leg is 16 kHz; the stream's rate is what streaming_start asks for.
_CAUSES = {"no-answer": "timeout", "busy": "user_busy", "failed": "call_rejected"}


@dataclass(slots=True)
class FakeTelnyxCall:
    call_control_id: str
    call_leg_id: str
    call_session_id: str
    to: str
    from_: str
    webhook_url: str
    amd: str
    timeout: int
    client_state: str | None
    command_id: str | None
    callee: Callee
    created: datetime
    alive: bool = True
    answered: bool = False
    hangup_cause: str | None = None
    ended: datetime | None = None
    events: list[tuple[str, int | None]] = field(default_factory=list)
    """(event type, our answer's status) of the events the API itself sent."""
    report: DialReport | None = None
    flavour: TelnyxFlavour | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def state(self) -> str | None:
        """The client_state of the call's latest event (a command may have changed it)."""
        return self.flavour.client_state if self.flavour is not None else self.client_state

    def status_json(self) -> dict[str, Any]:
        end = self.ended or datetime.now(UTC)
        return {
            "record_type": "call",
            "call_control_id": self.call_control_id,
            "call_leg_id": self.call_leg_id,
            "call_session_id": self.call_session_id,
            "is_alive": self.alive,
            "client_state": self.state,
            "call_duration": int((end - self.created).total_seconds()),
            "start_time": self.created.isoformat(),
            **({"end_time": self.ended.isoformat()} if self.ended is not None else {}),
        }


class _OutboundFlavour(TelnyxFlavour):
    """The Telnyx phone simulator for a call we dialled: answered already (the
    callee picked up), so it sends ``call.answered`` and waits for ``streaming_start``."""

    def __init__(self, private_key: Ed25519PrivateKey, api: FakeCarrierApi, call: FakeTelnyxCall):
        super().__init__(
            private_key,
            api,
            events_url=call.webhook_url,
            direction="outgoing",
            client_state=call.client_state,
        )
        self.call_control_id = call.call_control_id

    async def set_up(self, call: CarrierCall) -> StreamPlan | None:
        self.call = call
        self.api.register("telnyx", self.call_control_id, self._command)
        await self.webhook(call, "call.answered")
        while True:
            try:
                request = await asyncio.wait_for(self.commands.get(), call.timeout)
            except TimeoutError:
                call.error(0, "no streaming_start after call.answered")
                return None
            if request.action == "streaming_start":
                return self.plan(call, request.body)
            if await self.obey(call, request, "before the stream"):
                return None


class FakeTelnyxApi(LoopbackFakeApi[FakeTelnyxCall]):
    """``async with FakeTelnyxApi(...) as api:`` ``api.url`` is ``TELNYX_API_URL``."""

    def __init__(
        self,
        *,
        api_key: str,
        connection_id: str,
        private_key: Ed25519PrivateKey,
        bridge_public_url: str,
        bridge_local_url: str,
        callees: dict[str, Callee] | None = None,
    ) -> None:
        super().__init__(
            bridge_public_url=bridge_public_url, bridge_local_url=bridge_local_url, callees=callees
        )
        self.api_key = api_key
        self.connection_id = connection_id
        self.private_key = private_key
        self.control = FakeCarrierApi(ApiCredentials(telnyx_api_key=api_key))
        self.refuse_create: int | None = None  # an HTTP status to answer dials with

    @property
    def actions(self) -> list[ApiRequest]:
        """The Call Control commands the bridge sent (answer, streaming_start, speak …)."""
        return list(self.control.requests)

    # -- HTTP -----------------------------------------------------------------

    def _refusal(self, request: Request) -> Response | None:
        self.note(request)  # dial/read requests (the actions are the control's)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, 10009, "Authentication failed")
        return None

    async def _dial(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, 10015, "Bad Request")
        if not isinstance(body, dict):
            return _error(400, 10015, "Bad Request")
        if self.refuse_create is not None:
            return _error(self.refuse_create, 90000, "refused by the test")
        if body.get("connection_id") != self.connection_id:
            return _error(422, 10010, "Invalid connection_id")
        for name in ("to", "from", "webhook_url"):
            if not isinstance(body.get(name), str) or not body[name]:
                return _error(422, 10032, f"{name} is required")
        command_id = body.get("command_id")
        for existing in self.calls.values():
            if command_id and existing.command_id == command_id:
                return JSONResponse({"data": existing.status_json()})
        state = body.get("client_state")
        call = FakeTelnyxCall(
            call_control_id="v3:" + token(),
            call_leg_id=str(uuid.uuid4()),
            call_session_id=str(uuid.uuid4()),
            to=body["to"],
            from_=body["from"],
            webhook_url=body["webhook_url"],
            amd=str(body.get("answering_machine_detection") or "disabled"),
            timeout=int(body.get("timeout_secs") or 30),
            client_state=state if isinstance(state, str) else None,
            command_id=command_id if isinstance(command_id, str) else None,
            callee=self.callee(body["to"]),
            created=datetime.now(UTC),
        )
        self.start_call(call.call_control_id, call, self._run(call))
        data = call.status_json()
        data["is_alive"] = False  # "for Dial it will always be false" (dialling is async)
        return JSONResponse({"data": data})

    async def _status(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.path_params["call_id"])
        if call is None:
            return _error(404, 90015, "Call not found")
        return JSONResponse({"data": call.status_json()})

    async def _active_calls(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if request.path_params["connection_id"] != self.connection_id:
            return _error(404, 10005, "Resource not found")
        live = [
            {
                "record_type": "call",
                "call_control_id": c.call_control_id,
                "call_leg_id": c.call_leg_id,
                "call_session_id": c.call_session_id,
                "client_state": c.state or "",
                "call_duration": c.status_json()["call_duration"],
            }
            for c in self.calls.values()
            if c.alive
        ]
        return self._page(request, live)

    async def _call_events(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        q = request.query_params
        since_text = q.get("filter[occurred_at][gte]")
        since = datetime.fromisoformat(since_text) if since_text else None
        found = [
            {
                "record_type": "call_event",
                "call_leg_id": c.call_leg_id,
                "call_session_id": c.call_session_id,
                "event_timestamp": c.ended.isoformat(),
                "name": "call.hangup",
                "type": "webhook",
                "metadata": {
                    "event": {
                        "event_type": "call.hangup",
                        "payload": {
                            "call_control_id": c.call_control_id,
                            "client_state": c.state,
                            "hangup_cause": c.hangup_cause,
                            "from": c.from_,
                            "to": c.to,
                        },
                    }
                },
            }
            for c in self.calls.values()
            if c.ended is not None
            and q.get("filter[name]", "call.hangup") == "call.hangup"
            and q.get("filter[type]", "webhook") == "webhook"
            and q.get("filter[connection_id]", self.connection_id) == self.connection_id
            and q.get("filter[to]", c.to) == c.to
            and q.get("filter[from]", c.from_) == c.from_
            and q.get("filter[leg_id]", c.call_leg_id) == c.call_leg_id
            and (since is None or c.ended >= since)
        ]
        return self._page(request, found)

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        number = int(request.query_params.get("page[number]", "1"))
        size = int(request.query_params.get("page[size]", "20"))
        pages = max(1, -(-len(items) // size))
        chunk = items[(number - 1) * size : number * size]
        meta = {
            "page_number": number,
            "page_size": size,
            "total_pages": pages,
            "total_results": len(items),
        }
        return JSONResponse({"data": chunk, "meta": meta})

    # -- the call -------------------------------------------------------------

    async def _event(self, call: FakeTelnyxCall, event_type: str, **extra: Any) -> None:
        """An event the API sends itself (before the answer, and the final hang-up)."""
        body = json.dumps(
            {
                "data": {
                    "record_type": "event",
                    "event_type": event_type,
                    "id": str(uuid.uuid4()),
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "payload": {
                        "call_control_id": call.call_control_id,
                        "call_leg_id": call.call_leg_id,
                        "call_session_id": call.call_session_id,
                        "connection_id": self.connection_id,
                        "client_state": call.state,
                        "from": call.from_,
                        "to": call.to,
                        "direction": "outgoing",
                        "state": "hangup" if event_type == "call.hangup" else "bridging",
                        **extra,
                    },
                },
                "meta": {"attempt": 1, "delivered_to": call.webhook_url},
            }
        ).encode()
        stamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(self.private_key, body, stamp),
            TIMESTAMP_HEADER: stamp,
        }
        answer = await self.callback(call.webhook_url, headers, content=body)
        call.events.append((event_type, answer))

    async def _ringing(self, request: ApiRequest) -> dict[str, Any]:
        call = self.calls[request.call_id]
        if request.action == "hangup":
            call.cancel.set()
        return {"data": {"result": "ok"}}

    def _hung_up(self, call: FakeTelnyxCall, cause: str) -> None:
        call.alive = False
        call.hangup_cause = cause
        call.ended = datetime.now(UTC)

    async def _run(self, call: FakeTelnyxCall) -> None:
        callee = call.callee
        self.control.register("telnyx", call.call_control_id, self._ringing)
        await self._event(call, "call.initiated")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.cancel.wait(), callee.ring)
        if call.cancel.is_set() or callee.kind in _CAUSES:
            self.control.unregister("telnyx", call.call_control_id)
            cause = "originator_cancel" if call.cancel.is_set() else _CAUSES[callee.kind]
            self._hung_up(call, cause)
            await self._event(call, "call.hangup", hangup_cause=cause)
            return
        call.answered = True
        flavour = call.flavour = _OutboundFlavour(self.private_key, self.control, call)
        report = DialReport(
            call_sid=call.call_leg_id,
            account_sid="",
            stream_sid="",
            to=call.to,
            from_=call.from_,
            carrier="telnyx",
        )
        phone = callee_phone(flavour, callee, self.routes, report)
        async with alongside(self._amd(call, flavour, phone)):
            call.report = await phone.run()
        self._hung_up(call, "normal_clearing")
        if not any(c.get("kind") == "call.hangup" for c in call.report.callbacks):
            await self._event(call, "call.hangup", hangup_cause="normal_clearing")

    async def _amd(self, call: FakeTelnyxCall, flavour: TelnyxFlavour, phone: CarrierCall) -> None:
        if call.amd not in ("detect", "detect_beep"):
            return
        await asyncio.sleep(0.3)
        result = "human" if call.callee.kind == "human" else "machine"
        await flavour.webhook(phone, "call.machine.detection.ended", result=result)
        if result == "machine" and call.amd == "detect_beep":
            await asyncio.sleep(call.callee.greeting + 0.1)  # the greeting's rest, the beep
            await flavour.webhook(phone, "call.machine.greeting.ended", result="beep_detected")

    # -- lifetime -------------------------------------------------------------

    def routes_served(self) -> list[BaseRoute]:
        return [
            Route("/v2/calls", self._dial, methods=["POST"]),
            Route("/v2/calls/{call_id}", self._status, methods=["GET"]),
            Route(
                "/v2/connections/{connection_id}/active_calls",
                self._active_calls,
                methods=["GET"],
            ),
            Route("/v2/call_events", self._call_events, methods=["GET"]),
            Mount("", app=self.control.app()),  # actions/{action}: the phone's control
        ]


def _error(status: int, code: int, title: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"code": str(code), "title": title, "detail": title}]}, status_code=status
    )
