"""TEST DOUBLE: Twilio's REST Calls resource on loopback, with callees that answer.

The real ``twilio`` package talks to it: point the client's base URL here
(``TWILIO_API_URL`` for ``phonebridge serve``, or
:class:`phonebridge.outbound.carrier.TwilioDialer`'s ``api_base_url``); the
package's own transport rewrites ``https://api.twilio.com`` to this server.
It serves what phonebridge uses of the 2010-04-01 Calls resource, as Twilio
documents it: ``POST Calls.json`` (create: form ``To``, ``From``, ``Url``,
``StatusCallback``, ``StatusCallbackEvent``, ``MachineDetection``,
``AsyncAmd``, ``AsyncAmdStatusCallback``, ``Timeout``; 201 with the call's
JSON), ``GET Calls/{Sid}.json``, ``POST Calls/{Sid}.json`` (``Status``
completed/canceled ends it) and ``GET Calls.json`` filtered by ``To``,
``From`` and ``StartTime>``. HTTP Basic with the account SID and auth token.

Each created call rings its :class:`Callee` and then does what Twilio does:
signed status callbacks (``initiated``, ``ringing``, ``answered``/
``in-progress``, then the terminal one: ``completed``, ``busy``,
``no-answer`` or ``failed``); for an answered call, the answer URL is fetched
and its ``<Connect><Stream>`` run by the phone simulator
(:func:`phonebridge.simulators.phone.dial.dial`), with the callee's audio: a
person speaking (and pressing keys), or an answering machine's greeting,
then a beep. The async AMD verdict is posted to ``AsyncAmdStatusCallback``:
``human``; ``machine_start`` at once (``MachineDetection=Enable``) or
``machine_end_beep`` after the beep (``DetectMessageEnd``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.simulators.fake_api import (
    Callee,
    CalleeKind,
    LoopbackFakeApi,
    alongside,
    callee_audio,
)
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

__all__ = ["Callee", "CalleeKind", "FakeCall", "FakeTwilioApi", "fake_twilio_api"]


@dataclass(slots=True)
class FakeCall:
    sid: str
    to: str
    from_: str
    url: str
    status_callback: str | None
    events: tuple[str, ...]
    machine_detection: str | None
    amd_callback: str | None
    timeout: int
    callee: Callee
    created: datetime
    status: str = "queued"
    answered_by: str | None = None
    duration: int = 0
    callbacks: list[tuple[str, dict[str, str], int | None]] = field(default_factory=list)
    report: DialReport | None = None
    updates: list[dict[str, str]] = field(default_factory=list)

    def json(self, account: str) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": account,
            "to": self.to,
            "from": self.from_,
            "status": self.status,
            "direction": "outbound-api",
            "answered_by": self.answered_by,
            "duration": str(self.duration),
            "date_created": format_datetime(self.created),
            "start_time": format_datetime(self.created),
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{self.sid}.json",
        }


class FakeTwilioApi(LoopbackFakeApi[FakeCall]):
    """``async with FakeTwilioApi(...) as api:`` ``api.url`` is the base URL.

    A Twilio-shaped carrier subclasses it by overriding :attr:`PREFIX`,
    :meth:`_new_sid`, :meth:`_signed` and :meth:`_connect` (the SignalWire
    Compatibility API double, simulators/signalwire_api.py).
    """

    PREFIX = "/2010-04-01/Accounts/{account}"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        bridge_public_url: str,
        bridge_local_url: str,
        callees: dict[str, Callee] | None = None,
    ) -> None:
        super().__init__(
            bridge_public_url=bridge_public_url, bridge_local_url=bridge_local_url, callees=callees
        )
        self.account = account_sid
        self.token = auth_token
        self.active = 0
        self.max_active = 0
        self.refuse_create: int | None = None  # an HTTP status to answer creates with

    # -- HTTP -----------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.account}:{self.token}".encode()).decode()
        return request.headers.get("authorization") == expected

    def _error(self, status: int, code: int, message: str) -> JSONResponse:
        return JSONResponse(
            {"code": code, "message": message, "status": status, "more_info": ""},
            status_code=status,
        )

    async def _calls(self, request: Request) -> Response:
        self.note(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        if request.path_params["account"] != self.account:
            return self._error(404, 20404, "not found")
        if request.method == "GET":
            return self._list(request)
        form = {k: str(v) for k, v in (await request.form()).items()}
        events = tuple(str(v) for v in (await request.form()).getlist("StatusCallbackEvent"))
        if self.refuse_create is not None:
            return self._error(self.refuse_create, 20500, "refused by the test")
        for name in ("To", "From", "Url"):
            if not form.get(name):
                return self._error(400, 21201 if name == "To" else 21205, f"{name} is required")
        sid = self._new_sid()
        call = FakeCall(
            sid=sid,
            to=form["To"],
            from_=form["From"],
            url=form["Url"],
            status_callback=form.get("StatusCallback"),
            events=events,
            machine_detection=form.get("MachineDetection"),
            amd_callback=form.get("AsyncAmdStatusCallback"),
            timeout=int(form.get("Timeout", "60")),
            callee=self.callee(form["To"]),
            created=datetime.now(UTC),
        )
        self.start_call(sid, call, self._run(call))
        return JSONResponse(call.json(self.account), status_code=201)

    def _list(self, request: Request) -> Response:
        query = request.query_params
        since_text = query.get("StartTime>")
        since = parsedate_to_datetime(since_text) if since_text and "," in since_text else None
        if since is None and since_text:
            since = datetime.fromisoformat(since_text).replace(tzinfo=UTC)
        found = [
            c.json(self.account)
            for c in self.calls.values()
            if (not query.get("To") or c.to == query["To"])
            and (not query.get("From") or c.from_ == query["From"])
            and (since is None or c.created.date() >= since.date())
        ]
        return JSONResponse(
            {
                "calls": found,
                "page": 0,
                "page_size": 50,
                "start": 0,
                "end": len(found),
                "first_page_uri": request.url.path,
                "next_page_uri": None,
                "previous_page_uri": None,
                "uri": request.url.path,
            }
        )

    async def _call(self, request: Request) -> Response:
        self.note(request)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        call = self.calls.get(request.path_params["sid"])
        if call is None:
            return self._error(404, 20404, "The requested resource was not found")
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.form()).items()}
            call.updates.append(form)
            ending = form.get("Status")
            if ending in ("completed", "canceled") and await self.stop_call(call.sid):
                await self._end(call, ending if call.status != "in-progress" else "completed")
        return JSONResponse(call.json(self.account))

    # -- the call -------------------------------------------------------------

    def _new_sid(self) -> str:
        return "CA" + secrets.token_hex(16)

    def _signed(self, url: str, params: dict[str, str]) -> dict[str, str]:
        """The headers that sign a callback."""
        return {SIGNATURE_HEADER: sign(self.token, url, params)}

    async def _post(self, call: FakeCall, url: str | None, params: dict[str, str]) -> None:
        if not url:
            return
        status = await self.callback(url, self._signed(url, params), data=params)
        call.callbacks.append((url.split("?")[0].rsplit("/", 1)[-1], params, status))

    def _params(self, call: FakeCall, status: str) -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "AccountSid": self.account,
            "From": call.from_,
            "To": call.to,
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
            "CallbackSource": "call-progress-events",
        }

    async def _status(self, call: FakeCall, status: str, event: str) -> None:
        call.status = status
        terminal = status in ("completed", "busy", "no-answer", "failed", "canceled")
        if terminal or event in call.events:
            params = self._params(call, status)
            if terminal:
                params["CallDuration"] = str(call.duration)
            await self._post(call, call.status_callback, params)

    async def _end(self, call: FakeCall, status: str) -> None:
        if call.status in ("completed", "busy", "no-answer", "failed", "canceled"):
            return
        self.active -= 1
        await self._status(call, status, "completed")

    async def _run(self, call: FakeCall) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        callee = call.callee
        await self._status(call, "initiated", "initiated")
        await self._status(call, "ringing", "ringing")
        await asyncio.sleep(callee.ring)
        if callee.kind in ("no-answer", "busy", "failed"):
            await self._end(call, callee.kind)
            return
        call.status = "in-progress"
        await self._status(call, "in-progress", "answered")
        started = asyncio.get_running_loop().time()
        try:
            async with alongside(self._amd(call)):
                call.report = await self._connect(call)
        finally:
            call.duration = int(asyncio.get_running_loop().time() - started + 0.5)
        await self._end(call, "completed")

    async def _connect(self, call: FakeCall) -> DialReport:
        """The answered call: fetch its answer URL and run the stream it asks for."""
        callee = call.callee
        pcm16, hangup_after = callee_audio(callee, 8000)
        return await dial(
            self.routes.local_base,
            to=call.to,
            from_=call.from_,
            auth_token=self.token,
            audio=pcm16_to_ulaw(pcm16),
            dtmf=callee.dtmf,
            hangup_after=hangup_after,
            call_sid=call.sid,
            account_sid=self.account,
            public_url=self.routes.public_base,
            webhook_url=call.url,
            direction="outbound-api",
        )

    async def _amd(self, call: FakeCall) -> None:
        if not call.machine_detection or not call.amd_callback:
            return
        callee = call.callee
        if callee.kind == "human":
            await asyncio.sleep(0.3)
            verdict = "human"
        elif call.machine_detection == "DetectMessageEnd":
            await asyncio.sleep(callee.greeting + 0.3 + 0.1)  # the greeting, the beep, a pause
            verdict = "machine_end_beep"
        else:
            await asyncio.sleep(0.3)
            verdict = "machine_start"
        call.answered_by = verdict
        params = self._params(call, "in-progress")
        params["AnsweredBy"] = verdict
        params["MachineDetectionDuration"] = "300"
        await self._post(call, call.amd_callback, params)

    # -- lifetime -------------------------------------------------------------

    def routes_served(self) -> list[BaseRoute]:
        prefix = self.PREFIX
        return [
            Route(prefix + "/Calls.json", self._calls, methods=["GET", "POST"]),
            Route(prefix + "/Calls/{sid}.json", self._call, methods=["GET", "POST"]),
        ]


@contextlib.asynccontextmanager
async def fake_twilio_api(**kwargs: Any) -> AsyncIterator[FakeTwilioApi]:
    async with FakeTwilioApi(**kwargs) as api:
        yield api
