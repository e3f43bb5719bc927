"""A browser on the Talk page as a call leg (calls/leg.py).

Wideband end to end: the page's AudioWorklet captures the microphone (echo
cancellation on) at 24 kHz and sends raw PCM; the call runs at 24 kHz, so
the model session encodes Opus from 24 kHz (fal gets the PCM untouched) and
its replies come back at 24 kHz, played by the page through a small jitter
buffer. The protocol lives in :mod:`~phonebridge.web.softphone.protocol`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from phonebridge.calls.leg import CallerAudio, KeyPress, LegEnded, LegEvent, PlaybackMark
from phonebridge.calls.outcome import CallEndReason
from phonebridge.web.softphone.protocol import (
    CLEAR_MESSAGE,
    MESSAGE_TOO_BIG,
    START_TIMEOUT_SECONDS,
    Audio,
    BrowserProtocolError,
    BrowserStream,
    Digit,
    Hangup,
    MarkPlayed,
    Start,
    mark_message,
    text_message,
)
from phonebridge.web.websocket_io import StarletteSocket

log = logging.getLogger(__name__)

CHANNEL: Final = "browser"


class BrowserSocket(Protocol):
    """What the leg needs of the page's WebSocket."""

    async def receive(self) -> str | bytes | None:
        """The next message; ``None`` once closed. Raises :class:`BrowserProtocolError`
        when the transport refused a frame (over the server's size limit)."""

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class StarletteBrowserSocket(StarletteSocket):
    """A Starlette WebSocket as :class:`BrowserSocket`; sends after a close are dropped."""

    def refused(self, code: int | None) -> BrowserProtocolError | None:
        if code == MESSAGE_TOO_BIG:
            # uvicorn refused a frame over ws_max_size and closed the socket.
            return BrowserProtocolError("frame over the server's size limit", MESSAGE_TOO_BIG)
        return None


async def await_start(
    socket: BrowserSocket, stream: BrowserStream, *, clock: Callable[[], float]
) -> Start | None:
    """Read the page's ``start``; ``None`` (socket closed with a reason) if it does not come."""
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            while stream.start is None:
                raw = await socket.receive()
                if raw is None:
                    return None
                stream.receive(raw, clock())
    except TimeoutError:
        await socket.close(1008, "no start")
        return None
    except BrowserProtocolError as exc:
        log.warning("talk socket refused before start: %s", exc)
        await socket.close(exc.close_code, str(exc)[:120])
        return None
    return stream.start


class BrowserLeg:
    """One started Talk socket; implements :class:`phonebridge.calls.leg.Leg`."""

    channel = CHANNEL
    supports_marks = True

    def __init__(
        self,
        socket: BrowserSocket,
        stream: BrowserStream,
        *,
        stream_id: str,
        clock: Callable[[], float],
        call_sid: str = "",
    ) -> None:
        assert stream.start is not None, "read 'start' first (await_start)"
        self.sample_rate = stream.start.sample_rate
        self.stream_id = stream_id
        self._socket = socket
        self._stream = stream
        self._clock = clock
        self._call_sid = call_sid
        self._ended: LegEnded | None = None

    async def receive(self) -> LegEvent | None:
        if self._ended is not None:
            return self._ended
        try:
            raw = await self._socket.receive()
            if raw is None:
                # The tab closed, the network went: a caller who drops.
                return self._end(CallEndReason.CALLER_DROPPED, "browser socket closed")
            event = self._stream.receive(raw, self._clock())
        except BrowserProtocolError as exc:
            log.warning(
                "talk socket broke the protocol: %s", exc, extra={"call_sid": self._call_sid}
            )
            await self._socket.close(exc.close_code, str(exc)[:120])
            return self._end(CallEndReason.PROTOCOL_ERROR, str(exc))
        match event:
            case Audio():
                return CallerAudio(event.pcm, self.sample_rate, event.at_sample)
            case Hangup():
                return self._end(CallEndReason.CALLER_HANGUP, "hang-up button")
            case MarkPlayed():
                return PlaybackMark(event.name)
            case Digit():
                return KeyPress(event.digit)
        return None

    def _end(self, reason: CallEndReason, detail: str) -> LegEnded:
        self._ended = LegEnded(reason, detail)
        return self._ended

    async def play(self, pcm: bytes) -> None:
        await self._socket.send_bytes(pcm)

    async def clear(self) -> None:
        await self._socket.send_text(CLEAR_MESSAGE)

    async def mark(self, name: str) -> None:
        await self._socket.send_text(mark_message(name))

    async def show_text(self, text: str) -> None:
        await self._socket.send_text(text_message(text))

    async def close(self) -> None:
        await self._socket.close(1000, "call ended")
