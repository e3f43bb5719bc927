"""A fake Twilio REST API and a simulated human, on loopback. TEST DOUBLE, not Twilio.

The bridge's real ``twilio`` package talks to it (``TWILIO_API_URL`` points
here): ``POST /2010-04-01/Accounts/<sid>/Calls.json`` places the human's call,
``POST .../Calls/<call sid>.json`` hangs it up or cancels it (20404 once the
call is over, as Twilio answers). Then it plays Twilio's part for the human's
leg, as a :class:`Human` behaves:

- ``accept``/``decline``: answer, request the whisper URL (signed, like every
  Twilio webhook), read the ``<Gather>``, post its action with Digits ``1`` or
  ``2``, follow the answer, then post the final status to the status callback;
- ``silent``: answer and press nothing (Twilio posts the action with no Digits);
- ``no_answer``: ring out: the final status is ``no-answer``, no whisper;
- ``ring``: ring until the bridge cancels the call (and never answer).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

ACCOUNT = "AC" + "ab" * 16
Behaviour = Literal["accept", "decline", "silent", "no_answer", "ring"]


@dataclass
class HumanCall:
    sid: str
    to: str
    from_: str
    url: str
    status_callback: str
    timeout: str
    status: str = "queued"
    whisper: str = ""  # what the human heard (the <Say> inside the <Gather>)
    key_answer: str = ""  # the TwiML after the key
    pressed_at: float | None = None
    key_answered_at: float | None = None
    hang_ups: list[tuple[str, int]] = field(default_factory=list)  # (Status, HTTP status)


class FakeTwilio:
    """The API + the human; ``async with FakeTwilio(...) as fake: fake.url``."""

    def __init__(self, *, auth_token: str, public_url: str, behaviour: Behaviour) -> None:
        self.auth_token = auth_token
        self.public_url = public_url.rstrip("/")
        self.bridge_url = ""  # set once the bridge listens (it needs self.url first)
        self.behaviour: Behaviour = behaviour
        self.calls: list[HumanCall] = []
        self.errors: list[str] = []
        self.url = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=10)

    # -- the REST API ----------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == expected

    async def _create(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate"}, status_code=401)
        form = await request.form()
        call = HumanCall(
            sid="CA" + secrets.token_hex(16),
            to=str(form["To"]),
            from_=str(form["From"]),
            url=str(form["Url"]),
            status_callback=str(form["StatusCallback"]),
            timeout=str(form.get("Timeout", "")),
        )
        self.calls.append(call)
        task = asyncio.create_task(self._human(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        body = {"sid": call.sid, "account_sid": ACCOUNT, "status": call.status, "to": call.to}
        return JSONResponse(body, status_code=201)

    async def _update(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"code": 20003, "message": "Authenticate"}, status_code=401)
        sid = request.path_params["sid"].removesuffix(".json")
        status = str((await request.form()).get("Status", ""))
        call = next((c for c in self.calls if c.sid == sid), None)
        if call is None or call.status in ("completed", "no-answer", "canceled", "busy"):
            if call is not None:
                call.hang_ups.append((status, 404))
            body = {"code": 20404, "message": "The requested resource was not found", "status": 404}
            return JSONResponse(body, status_code=404)
        call.hang_ups.append((status, 200))
        await self._end(call, "canceled" if status == "canceled" else "completed")
        return JSONResponse({"sid": sid, "status": call.status})

    # -- Twilio's part for the human's leg ---------------------------------------------------

    async def _post(self, url: str, params: dict[str, str]) -> httpx.Response:
        headers = {SIGNATURE_HEADER: sign(self.auth_token, url, params)}
        local = self.bridge_url.rstrip("/") + url.removeprefix(self.public_url)
        return await self._http.post(local, data=params, headers=headers)

    def _params(self, call: HumanCall) -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "AccountSid": ACCOUNT,
            "From": call.from_,
            "To": call.to,
            "CallStatus": call.status,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }

    async def _end(self, call: HumanCall, status: str) -> None:
        if call.status in ("completed", "no-answer", "canceled", "busy"):
            return
        call.status = status
        answer = await self._post(call.status_callback, self._params(call))
        if answer.status_code != 204:
            self.errors.append(f"status callback answered {answer.status_code}")

    async def _human(self, call: HumanCall) -> None:
        call.status = "ringing"
        await asyncio.sleep(0.2)
        if self.behaviour == "ring":
            return  # until the bridge cancels it
        if self.behaviour == "no_answer":
            await self._end(call, "no-answer")
            return
        call.status = "in-progress"
        answer = await self._post(call.url, self._params(call))
        if answer.status_code != 200:
            self.errors.append(f"whisper answered {answer.status_code}")
            return
        document = ET.fromstring(answer.text)
        gather = document.find("Gather")
        if gather is None:
            self.errors.append(f"no <Gather> in the whisper: {answer.text}")
            await self._end(call, "completed")
            return
        call.whisper = " ".join((say.text or "") for say in gather.iter("Say"))
        digits = {"accept": "1", "decline": "2", "silent": ""}[self.behaviour]
        call.pressed_at = asyncio.get_running_loop().time()
        reply = await self._post(gather.get("action", ""), {**self._params(call), "Digits": digits})
        call.key_answered_at = asyncio.get_running_loop().time()
        call.key_answer = reply.text
        if self.behaviour == "accept":
            return  # in the conference with the caller until the test ends
        await self._end(call, "completed")

    # -- life ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeTwilio]:
        base = f"/2010-04-01/Accounts/{ACCOUNT}"
        app = Starlette(
            routes=[
                Route(base + "/Calls.json", self._create, methods=["POST"]),
                Route(base + "/Calls/{sid}", self._update, methods=["POST"]),
            ]
        )
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(10):
                while True:
                    if server.started:
                        break
                    await asyncio.sleep(0.01)
            yield self
        finally:
            for human in list(self._tasks):
                human.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._http.aclose()
            server.should_exit = True
            await task
            sock.close()
