"""What every further carrier's HTTP and WebSocket edge shares.

Each carrier module (:mod:`.telnyx`, :mod:`.plivo`, :mod:`.vonage`,
:mod:`.signalwire`, :mod:`.exotel`) owns its routes, its signature checks and
its answer documents; they all go through the bridge the same way:

1. **The call webhook** (signed as the carrier signs) becomes a
   :class:`~phonebridge.calls.bridge.PhoneCall` for
   :meth:`Bridge.answer_phone` — guard, leases, limits, the model session
   starts opening, and the row's ``channel`` is the carrier — and the result
   is rendered in the carrier's answer document. The answer names a media
   socket under this replica's sticky prefix (``<sticky>/<carrier>/media``),
   so an edge proxy routes it back to the process holding the pending call.
2. **The media socket** is authenticated *before* it is accepted (a refused
   upgrade is an HTTP 403 and touches no call); :func:`serve_stream` then
   reads the stream's start, checks that the one-time token belongs to a call
   of *this* carrier (a token presented by another carrier's socket is refused
   and not burnt: no cross-talk), claims it, and runs the call on a
   :class:`~phonebridge.telephony.carrier_leg.CarrierLeg`.
3. **After the stream** each carrier continues the call its own way (an action
   URL, an event answered with an NCCO, REST), from
   :meth:`Bridge.after_stream` / :meth:`Bridge.decide`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import WebSocket

from phonebridge.calls.bridge import Bridge
from phonebridge.calls.pending import PendingCall
from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.carrier_leg import CarrierLeg, LegSpec, bridge_call_sid
from phonebridge.telephony.stream import CarrierStream, StreamEvent, StreamStarted
from phonebridge.telephony.twilio.signature import public_request_url
from phonebridge.web.websocket_io import StarletteSocket

log = logging.getLogger(__name__)

REFUSED = 1008  # RFC 6455 §7.4.1 policy violation; before accept() it is an HTTP 403


@dataclass(slots=True)
class CarrierEdge:
    """What the carrier routes need: the bridge, the public URLs, a clock, an HTTP client."""

    bridge: Bridge
    public_url: str  # the https base the carriers reach
    sticky_prefix: str  # /twilio, or /twilio/r/<replica id> (config.Settings.sticky_prefix)
    rate: int  # the rate asked of carriers that offer wideband (8000 or 16000)
    wall_clock: Callable[[], float]  # signatures carry Unix times
    http: httpx.AsyncClient
    start_timeout: float = 10.0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def webhook_url(self, path: str) -> str:
        """The public https URL of ``path``."""
        return public_request_url(self.public_url, path)

    def websocket_url(self, path: str) -> str:
        url = self.webhook_url(path)
        return (
            "wss://" + url.removeprefix("https://")
            if url.startswith("https://")
            else ("ws://" + url.removeprefix("http://"))
        )

    def signed_url(self, path: str, query: str = "") -> str:
        """The URL a carrier signed for a request to ``path``: configured base, never Host."""
        return public_request_url(self.public_url, path, query)

    @staticmethod
    def call_sid(carrier: str, call_id: str) -> str:
        """Our SID for the carrier's call id (see carrier_leg.bridge_call_sid)."""
        return bridge_call_sid(carrier, call_id)

    def sticky(self, carrier: str, tail: str) -> str:
        return f"{self.sticky_prefix}/{carrier}/{tail}"

    def pending_of(self, channel: str, token: str | None) -> PendingCall | None:
        """The pending call ``token`` reserved, if it is one of ``channel``'s."""
        if not token:
            return None
        pending = self.bridge.pending_call(token)
        if pending is None or pending.channel != channel:
            return None
        return pending

    def spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        """Work a webhook starts but must not wait for (REST answers): kept until done."""
        task = asyncio.create_task(job, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class StarletteMedia(StarletteSocket):
    """A Starlette WebSocket as a :class:`~phonebridge.telephony.carrier_leg.MediaSocket`."""


async def _read_start(
    socket: StarletteMedia, stream: CarrierStream, within: float
) -> tuple[StreamStarted, list[StreamEvent]] | None:
    events: list[StreamEvent] = []
    try:
        async with asyncio.timeout(within):
            while stream.started is None:
                raw = await socket.receive()
                if raw is None:
                    return None
                events = stream.receive(raw, 0.0)
    except (TimeoutError, RemoteProtocolError) as exc:
        log.warning("%s media stream rejected before start: %r", stream.carrier, exc)
        return None
    started = stream.started
    return started, [e for e in events if e is not started]


async def serve_stream(
    edge: CarrierEdge,
    websocket: WebSocket,
    spec: LegSpec,
    *,
    upgrade_token: str | None = None,
    before_close: Callable[[PendingCall, str], Callable[[], Awaitable[None]]] | None = None,
    reserve: Callable[[StreamStarted], Awaitable[str | None]] | None = None,
) -> None:
    """Accept an authenticated media socket, claim its call and run it to the end.

    ``upgrade_token`` is the one-time token the upgrade carried (Telnyx's auth
    header, SignalWire's bearer, Plivo's path); without it the token comes
    from the stream's start (Vonage's headers, Exotel's custom parameters).
    ``reserve`` is for a stream that is itself the answer (an Exotel outbound
    call): it reserves the call from the start and gives its token (None: refused).
    """
    await websocket.accept()
    socket = StarletteMedia(websocket)
    stream = spec.new_stream(lambda note: log.info("%s", note))
    got = await _read_start(socket, stream, edge.start_timeout)
    if got is None:
        await socket.close(REFUSED)
        return
    started, queued = got
    if reserve is not None:
        upgrade_token = await reserve(started)
        if upgrade_token is None:
            await socket.close(REFUSED)
            return
    given = started.parameters.get("token")
    token = upgrade_token if upgrade_token is not None else given or ""
    if (
        upgrade_token is not None
        and given is not None
        and not hmac.compare_digest(given.encode(), upgrade_token.encode())
    ):
        token = ""  # two different tokens on one stream: neither is trusted
    pending = edge.pending_of(spec.channel, token)
    if pending is None:
        log.warning(
            "%s media stream with an unknown, used or foreign token",
            spec.channel,
            extra={"call_sid": started.call_id},
        )
        await socket.close(REFUSED)
        return
    claimed = edge.bridge.claim(token, bridge_call_sid(spec.channel, started.call_id))
    if claimed is None:
        log.warning(
            "%s media stream for another call's token",
            spec.channel,
            extra={"call_sid": started.call_id},
        )
        await socket.close(REFUSED)
        return
    leg = CarrierLeg(
        socket,
        stream,
        spec,
        sample_rate=claimed.sample_rate,
        queued=queued,
        before_close=None if before_close is None else before_close(claimed, started.call_id),
        call_sid=claimed.call_sid,
    )
    await edge.bridge.run_call(claimed, leg)


def refuse_before_accept(websocket: WebSocket, carrier: str, why: str) -> Coroutine[Any, Any, None]:
    """Close an upgrade we refuse: the carrier sees HTTP 403, no call is touched."""
    log.warning("%s media upgrade refused: %s", carrier, why)
    return websocket.close(code=REFUSED)
