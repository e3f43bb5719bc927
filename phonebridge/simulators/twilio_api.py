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
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Literal

import httpx
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.simulators.phone.routes import Routes
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

CalleeKind = Literal["human", "machine", "no-answer", "busy", "failed"]


@dataclass(frozen=True, slots=True)
class Callee:
    """How the number answers."""

    kind: CalleeKind = "human"
    ring: float = 0.05  # seconds of ringing before the answer (or the busy/failed verdict)
    talk: float = 1.0  # a person: seconds on the line before hanging up
    dtmf: tuple[tuple[float, str], ...] = ()  # a person: keys pressed (time, digits)
    greeting: float = 0.6  # a machine: seconds of greeting before the beep


def _tone(seconds: float, freq: float, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return pcm16_to_ulaw((np.sin(2 * np.pi * freq * t) * level * 32767).astype("<i2").tobytes())


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


class FakeTwilioApi:
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
        self.account = account_sid
        self.token = auth_token
        self.routes = Routes(bridge_public_url, bridge_local_url)
        self.callees = callees or {}
        self.calls: dict[str, FakeCall] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API request
        self.active = 0
        self.max_active = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.url = ""
        self.refuse_create: int | None = None  # an HTTP status to answer creates with

    @property
    def created(self) -> list[FakeCall]:
        return list(self.calls.values())

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
        self.requests.append((request.method, request.url.path))
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
            callee=self.callees.get(form["To"], Callee()),
            created=datetime.now(UTC),
        )
        self.calls[sid] = call
        self._tasks[sid] = asyncio.create_task(self._run(call))
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
        self.requests.append((request.method, request.url.path))
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        call = self.calls.get(request.path_params["sid"])
        if call is None:
            return self._error(404, 20404, "The requested resource was not found")
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.form()).items()}
            call.updates.append(form)
            if form.get("Status") in ("completed", "canceled"):
                task = self._tasks.get(call.sid)
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    await self._end(
                        call, form["Status"] if call.status != "in-progress" else "completed"
                    )
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
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.post(
                    self.routes.http(url), data=params, headers=self._signed(url, params)
                )
            call.callbacks.append(
                (url.split("?")[0].rsplit("/", 1)[-1], params, response.status_code)
            )
        except httpx.HTTPError:
            call.callbacks.append((url.split("?")[0].rsplit("/", 1)[-1], params, None))

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
        amd = asyncio.create_task(self._amd(call))
        try:
            call.report = await self._connect(call)
        finally:
            amd.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await amd
            call.duration = int(asyncio.get_running_loop().time() - started + 0.5)
        await self._end(call, "completed")

    async def _connect(self, call: FakeCall) -> DialReport:
        """The answered call: fetch its answer URL and run the stream it asks for."""
        callee = call.callee
        if callee.kind == "human":
            audio, hangup_after = _tone(callee.talk, 440.0), callee.talk
        else:
            audio = _tone(callee.greeting, 300.0) + _tone(0.3, 1000.0, 0.6)
            hangup_after = callee.greeting + 20.0  # a machine records until it times out
        return await dial(
            self.routes.local_base,
            to=call.to,
            from_=call.from_,
            auth_token=self.token,
            audio=audio,
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

    async def __aenter__(self) -> FakeTwilioApi:
        prefix = self.PREFIX
        app = Starlette(
            routes=[
                Route(prefix + "/Calls.json", self._calls, methods=["GET", "POST"]),
                Route(prefix + "/Calls/{sid}.json", self._call, methods=["GET", "POST"]),
            ]
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        self._server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, no event
            await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._server.should_exit = True
        await self._serving
        self._sock.close()

    async def wait_ended(self) -> None:
        """Until every call created so far has run to its end."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


@contextlib.asynccontextmanager
async def fake_twilio_api(**kwargs: Any) -> AsyncIterator[FakeTwilioApi]:
    async with FakeTwilioApi(**kwargs) as api:
        yield api
