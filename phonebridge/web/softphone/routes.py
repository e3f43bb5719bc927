"""The Talk page and listen-in: HTTP and WebSocket edges (issue 13).

- ``GET /talk``: pick a persona (optionally override its prompt and voice for
  one test call), press Call.
- ``POST /api/talk/tickets``: the page's authenticated request for a one-time
  ticket (web/softphone/tickets.py); a JSON body, so a cross-site form cannot
  send it without a CORS preflight.
- ``WS /talk/socket?ticket=…``: the call. The ticket is checked *before* the
  upgrade is accepted (a refused upgrade is an HTTP 403 and costs nothing);
  the call is admitted only after the page's ``start``, through
  :meth:`Bridge.admit`, the same guard, leases and limits as a phone call,
  and runs on :meth:`Bridge.run_call`, the same call path.
- ``GET /calls/{sid}/listen``, ``POST /api/calls/{sid}/listen``,
  ``WS /listen/socket?ticket=…``: listen to a live call, read-only, through
  the call's bounded fan-out (calls/listen.py). Logged and noted on the call.

Every page and POST is behind the dashboard's auth; the sockets are bound to
it by their ticket, and refuse a cross-site ``Origin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from phonebridge.calls.bridge import Bridge, CallRefused, NewCall
from phonebridge.errors import CapacityError
from phonebridge.models.base import VOICES, SessionRequest
from phonebridge.personas.schema import MAX_PROMPT_CHARS
from phonebridge.storage.layout import is_valid_call_sid
from phonebridge.web.auth import AuthDependency, dashboard_user
from phonebridge.web.softphone.leg import (
    BrowserLeg,
    StarletteBrowserSocket,
    await_start,
)
from phonebridge.web.softphone.protocol import BROWSER_RATES, BrowserStream
from phonebridge.web.softphone.tickets import ListenTicket, TalkTicket, TicketBook

log = logging.getLogger(__name__)

_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
TRY_AGAIN_LATER = 1013  # RFC 6455 §7.4.1: the server is overloaded (busy, a cap)


class TalkRequest(BaseModel):
    """What the Talk page asks for: a persona, and maybe a one-call prompt and voice."""

    persona: Annotated[str, Field(min_length=1, max_length=128)]
    prompt: Annotated[str | None, Field(max_length=MAX_PROMPT_CHARS)] = None
    voice: str | None = None


class TicketOut(BaseModel):
    ticket: str
    socket_path: str
    sample_rate: int | None = None


def _same_origin(websocket: WebSocket) -> bool:
    """A browser always sends ``Origin`` on a WebSocket upgrade; it must be this host."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (a script with its ticket): nothing to forge
    return urlsplit(origin).netloc == websocket.headers.get("host", "")


def softphone_router(
    bridge: Bridge,
    auth_dependency: AuthDependency,
    *,
    calls_per_user: int = 1,
    clock: Callable[[], float],
    tickets: TicketBook | None = None,
) -> APIRouter:
    """The Talk page, listen-in and their sockets."""
    router = APIRouter(include_in_schema=False)
    protected = [Depends(auth_dependency)]
    templates = Jinja2Templates(directory=str(_TEMPLATES))
    book = tickets or TicketBook()
    placed: Counter[str] = Counter()  # browser calls per user, admitted until they end

    @router.get("/talk", response_class=HTMLResponse, dependencies=protected)
    async def talk_page(request: Request) -> HTMLResponse:
        personas = sorted(bridge.persona_book().personas, key=lambda p: p.id)
        return templates.TemplateResponse(
            request,
            "talk.html",
            {
                "nav": "talk",
                "personas": [
                    {"id": p.id, "name": p.name, "voice": p.voice, "prompt": p.prompt}
                    for p in personas
                ],
                "voices": sorted(VOICES),
            },
        )

    @router.post("/api/talk/tickets", dependencies=protected)
    async def talk_ticket(request: Request, body: TalkRequest) -> TicketOut:
        user = dashboard_user(request)
        persona = bridge.persona_book().by_id(body.persona)
        if persona is None:
            raise HTTPException(status_code=404, detail="no such persona")
        if body.voice is not None and body.voice not in VOICES:
            raise HTTPException(status_code=422, detail="voice must be a PersonaPlex voice")
        if body.prompt is not None and not body.prompt.strip():
            raise HTTPException(status_code=422, detail="the prompt must not be empty")
        if placed[user] >= calls_per_user:
            raise HTTPException(
                status_code=429, detail=f"{user} already has {placed[user]} browser call(s)"
            )
        ticket = TalkTicket(user, persona.id, body.prompt, body.voice)
        token = book.issue(ticket, clock())
        rate = max(BROWSER_RATES)
        return TicketOut(ticket=token, socket_path=f"/talk/socket?ticket={token}", sample_rate=rate)

    @router.websocket("/talk/socket")
    async def talk_socket(websocket: WebSocket) -> None:
        ticket = book.redeem(websocket.query_params.get("ticket", ""), clock())
        if not isinstance(ticket, TalkTicket) or not _same_origin(websocket):
            log.warning("talk socket refused: unknown, used or expired ticket, or cross-site")
            await websocket.close(code=1008)  # before accept(): an HTTP 403
            return
        await websocket.accept()
        socket = StarletteBrowserSocket(websocket)
        stream = BrowserStream()
        start = await await_start(socket, stream, clock=clock)
        if start is None:
            return
        user = ticket.user
        persona = bridge.persona_book().by_id(ticket.persona_id)
        if persona is None:
            await socket.close(1008, "persona no longer exists")
            return
        if placed[user] >= calls_per_user:
            await _refuse(socket, "user_cap", f"{calls_per_user} browser call(s) per user")
            return
        placed[user] += 1  # before any await: two sockets of one user cannot both pass
        try:
            request = SessionRequest(
                prompt=ticket.prompt or persona.prompt,
                voice=ticket.voice or persona.voice,
                sample_rate=start.sample_rate,
            )
            call_sid = "CA" + secrets.token_hex(16)  # the call SID shape storage expects
            admitted = await bridge.admit(
                NewCall(
                    call_sid=call_sid,
                    from_number=f"browser:{user}",
                    to_number="",
                    persona=persona,
                    request=request,
                    channel=BrowserLeg.channel,
                    placed_by=user,
                )
            )
            if isinstance(admitted, CallRefused):
                await _refuse(socket, admitted.reason.value, admitted.detail)
                return
            if ticket.prompt is not None or ticket.voice is not None:
                admitted.events.append((0.0, "prompt_override", f"by {user}, not saved"))
            pending = bridge.claim(admitted.token, call_sid)
            assert pending is admitted  # just reserved, nobody else knows the token
            await socket.send_text(json.dumps({"type": "call", "callSid": call_sid}))
            leg = BrowserLeg(
                socket, stream, stream_id="BR" + call_sid[2:], clock=clock, call_sid=call_sid
            )
            await bridge.run_call(pending, leg)
        finally:
            placed[user] -= 1
            if placed[user] <= 0:
                del placed[user]

    @router.get("/calls/{call_sid}/listen", response_class=HTMLResponse, dependencies=protected)
    async def listen_page(request: Request, call_sid: str) -> HTMLResponse:
        if not is_valid_call_sid(call_sid):
            raise HTTPException(status_code=404, detail="no such call")
        return templates.TemplateResponse(request, "listen.html", {"call_sid": call_sid})

    @router.post("/api/calls/{call_sid}/listen", dependencies=protected)
    async def listen_ticket(request: Request, call_sid: str) -> TicketOut:
        session = bridge.live.get(call_sid)
        if session is None:
            raise HTTPException(status_code=404, detail="no live call with that SID here")
        token = book.issue(ListenTicket(dashboard_user(request), call_sid), clock())
        return TicketOut(
            ticket=token,
            socket_path=f"/listen/socket?ticket={token}",
            sample_rate=session.sample_rate,
        )

    @router.websocket("/listen/socket")
    async def listen_socket(websocket: WebSocket) -> None:
        redeemed = book.redeem(websocket.query_params.get("ticket", ""), clock())
        ticket = redeemed if isinstance(redeemed, ListenTicket) else None
        session = bridge.live.get(ticket.call_sid) if ticket is not None else None
        if session is None or ticket is None or not _same_origin(websocket):
            log.warning("listen socket refused: bad ticket, cross-site, or the call is over")
            await websocket.close(code=1008)
            return
        try:
            listener = session.listeners.join(ticket.user)
        except CapacityError as exc:
            await websocket.close(code=TRY_AGAIN_LATER, reason=str(exc))
            return
        await websocket.accept()
        log.info("%s is listening in", ticket.user, extra={"call_sid": ticket.call_sid})
        session.note("listen", f"{ticket.user} started listening")
        socket = StarletteBrowserSocket(websocket)

        async def until_closed() -> None:
            # Read-only: anything the listener sends is ignored; its close ends listening.
            while await socket.receive() is not None:
                pass
            session.listeners.leave(listener)

        watcher = asyncio.create_task(until_closed())
        try:
            rate = session.sample_rate
            await socket.send_text(json.dumps({"type": "start", "sampleRate": rate}))
            while (heard := await listener.next()) is not None:
                await socket.send_bytes(bytes([heard.side]) + heard.pcm)
        finally:
            session.listeners.leave(listener)
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
            await socket.close(1000, "call ended")
            log.info(
                "%s stopped listening (%d chunks dropped)",
                ticket.user,
                listener.dropped,
                extra={"call_sid": ticket.call_sid},
            )

    return router


async def _refuse(socket: StarletteBrowserSocket, reason: str, detail: str) -> None:
    """Tell the page why there is no call, then close: nothing was opened."""
    await socket.send_text(json.dumps({"type": "refused", "reason": reason, "detail": detail}))
    await socket.close(TRY_AGAIN_LATER, reason)
