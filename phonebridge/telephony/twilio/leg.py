"""A Twilio Media Stream as a call leg (calls/leg.py), over a text WebSocket.

The sans-I/O parsing and the message builders live in
:mod:`phonebridge.telephony.twilio.protocol` (PROTOCOLS.md §1.2-§1.3); this
module adds the socket and the codec: 8 kHz mu-law in and out, as 8 kHz PCM
to the call. What Twilio does that the leg interface names:

- caller audio: ``media`` (160 B of mu-law every 20 ms), positioned by
  Twilio's own ``timestamp`` (ms since the stream started);
- interrupt: ``clear``; playback position: ``mark``, echoed when played;
- DTMF: ``dtmf``; end: ``stop`` (the caller hung up) or the socket closing
  without one (dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.calls.leg import CallerAudio, KeyPress, LegEnded, LegEvent, PlaybackMark
from phonebridge.calls.outcome import CallEndReason
from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.twilio.events import Dtmf, Mark, Media, Start, Stop
from phonebridge.telephony.twilio.protocol import (
    MULAW_SAMPLE_RATE,
    MediaStreamProtocol,
    clear_message,
    mark_message,
    media_message,
)

log = logging.getLogger(__name__)

PHONE_FRAME_BYTES: Final = 160  # 20 ms of 8 kHz mu-law
CHANNEL: Final = "twilio"


class PhoneSocket(Protocol):
    """The Twilio side of a call, as the web layer hands it over."""

    async def receive(self) -> str | bytes | None:
        """The next message; ``None`` once the socket is closed.

        Raises :class:`RemoteProtocolError` when the transport refused what the
        peer sent (a frame over the size limit) and closed the socket.
        """

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int = 1000) -> None: ...


async def await_start(
    phone: PhoneSocket,
    stream: MediaStreamProtocol,
    *,
    start_timeout: float,
    clock: Callable[[], float],
) -> Start | None:
    """Read up to the ``start`` message; ``None`` if it never comes or is malformed."""
    try:
        async with asyncio.timeout(start_timeout):
            while stream.start is None:
                raw = await phone.receive()
                if raw is None:
                    return None
                stream.receive(raw, clock())
    except (TimeoutError, RemoteProtocolError) as exc:
        log.warning("media stream rejected before start: %r", exc)
        return None
    return stream.start


class TwilioLeg:
    """One started Twilio media stream; implements :class:`phonebridge.calls.leg.Leg`."""

    channel = CHANNEL
    sample_rate = MULAW_SAMPLE_RATE
    supports_marks = True

    def __init__(
        self,
        phone: PhoneSocket,
        stream: MediaStreamProtocol,
        *,
        clock: Callable[[], float],
        call_sid: str = "",
    ) -> None:
        assert stream.start is not None, "read 'start' first (await_start)"
        self.stream_id = stream.start.stream_sid
        self._phone = phone
        self._stream = stream
        self._clock = clock
        self._call_sid = call_sid
        self._outbound = bytearray()  # mu-law waiting for the rest of its 20 ms frame
        self._ended: LegEnded | None = None
        self._unknown_logged = False

    async def receive(self) -> LegEvent | None:
        if self._ended is not None:
            return self._ended
        try:
            raw = await self._phone.receive()
            if raw is None:
                return self._end(CallEndReason.CALLER_DROPPED, "media socket closed without stop")
            event = self._stream.receive(raw, self._clock())
        except RemoteProtocolError as exc:
            # Twilio never sends malformed messages; one that arrives means the
            # stream is corrupt or not Twilio's. End the call (the bridge closes
            # the stream, so Twilio asks the <Connect action> URL) rather than
            # guess, and read no further: the stream's state is unknown.
            log.warning("Twilio protocol error: %s", exc, extra={"call_sid": self._call_sid})
            return self._end(CallEndReason.PROTOCOL_ERROR, str(exc))
        match event:
            case Media():
                return CallerAudio(
                    ulaw_to_pcm16(event.payload),
                    MULAW_SAMPLE_RATE,
                    event.timestamp_ms * (MULAW_SAMPLE_RATE // 1000),
                )
            case Dtmf():
                return KeyPress(event.digit)
            case Mark():
                return PlaybackMark(event.name)
            case Stop():
                return self._end(CallEndReason.CALLER_HANGUP, "stop")
            case None if self._stream.unknown_events == 1 and not self._unknown_logged:
                # Once per call: Twilio may have added an event we do not know yet.
                self._unknown_logged = True
                log.info("skipping unknown Twilio events", extra={"call_sid": self._call_sid})
        return None  # ignored after stop (a second stop, late media), unknown events

    def _end(self, reason: CallEndReason, detail: str) -> LegEnded:
        self._ended = LegEnded(reason, detail)
        return self._ended

    async def play(self, pcm: bytes) -> None:
        self._outbound += pcm16_to_ulaw(pcm)
        whole = len(self._outbound) - len(self._outbound) % PHONE_FRAME_BYTES
        if not whole:
            return
        # All the whole 20 ms frames the model's page decoded to go in ONE
        # media message (80 ms from PersonaPlex). Twilio takes a payload of any
        # size and plays it in order (PROTOCOLS.md §1.3), and four messages
        # sent in the same instant would reach the caller no sooner: this is
        # the same audio at the same time for a quarter of the JSON, base64,
        # WebSocket frames and socket writes.
        message = media_message(self.stream_id, bytes(self._outbound[:whole]))
        del self._outbound[:whole]
        await self._phone.send_text(message)

    async def clear(self) -> None:
        self._outbound.clear()
        await self._phone.send_text(clear_message(self.stream_id))

    async def mark(self, name: str) -> None:
        await self._phone.send_text(mark_message(self.stream_id, name))

    async def show_text(self, text: str) -> None:
        """A phone line carries no text."""

    async def close(self) -> None:
        # Closing the stream makes Twilio request the <Connect action> URL when
        # the bridge ended the call; after the caller's `stop` it is a clean
        # close handshake instead of a dropped connection (the soak saw 1006s).
        await self._phone.close()
