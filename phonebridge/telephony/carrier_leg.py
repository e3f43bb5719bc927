"""A further carrier's media stream as a call leg (calls/leg.py).

One class for the five carriers: what differs between them (key casing,
codecs, frame rules, marks, the end) is already inside each carrier's
sans-I/O :class:`~phonebridge.telephony.stream.CarrierStream`, which hands
this module the same few typed events whatever the wire. What is left per
carrier is :class:`LegSpec`: the channel name, how its stream is built, and
whether it has a ``stop`` at all (Plivo and Vonage do not: the socket
closing is the end of the call, CARRIERS.md §8.8).

- **Caller audio** is PCM16 at the stream's rate; ``at_sample`` counts the
  samples delivered so far (Vonage frames carry no timestamp, and the others'
  timestamps are not promised in order: §1.3), so the recording is on the
  leg's own sample timeline.
- **The leg's rate** is the rate the model session was opened at (the webhook
  asked the carrier for it). A carrier may still stream another one (Telnyx
  streams L16 at the call's own rate: an 8 kHz PSTN caller stays 8 kHz); the
  leg then resamples both ways, so the session never sees a mismatch.
- **End**: ``stop`` (or, without one, the socket closing) is the caller's
  hang-up; a socket closing under a carrier that has ``stop`` is a drop; a
  malformed frame is a protocol error.
- **close()** runs the edge's ``before_close`` hook first (Telnyx and Plivo
  hang up or transfer over REST there, before the socket goes: the call's
  outcome is on record by then), then closes the socket.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from phonebridge.audio.pcm import RatioResampler
from phonebridge.calls.leg import CallerAudio, KeyPress, LegEnded, LegEvent, PlaybackMark
from phonebridge.calls.outcome import CallEndReason
from phonebridge.errors import PhonebridgeError, RemoteProtocolError
from phonebridge.telephony import stream as wire
from phonebridge.telephony.stream import CarrierStream, Frame, Note

log = logging.getLogger(__name__)


def bridge_call_sid(carrier: str, call_id: str) -> str:
    """The call's SID on our side: ``CA`` + 32 hex digits derived from the carrier's id.

    Call rows, recordings and the API use Twilio's SID shape (storage/layout.py
    refuses anything else as a file name); a carrier's id (Telnyx ``v3:…``,
    UUIDs) does not have it. The same id always gives the same SID, so a
    retried webhook and the stream's start find the same call, and the
    carrier's name is part of it, so two carriers' ids never collide. The
    carrier's own id stays on the row as the leg's ``stream_id``.
    """
    digest = hashlib.sha256(f"{carrier}:{call_id}".encode()).hexdigest()
    return "CA" + digest[:32]


class MediaSocket(Protocol):
    """A carrier's media socket as the web layer hands it over (text and binary)."""

    async def receive(self) -> str | bytes | None:
        """The next message; ``None`` once closed.

        ``RemoteProtocolError`` when the server refused a frame and closed.
        """

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int = 1000) -> None: ...


@dataclass(frozen=True, slots=True)
class LegSpec:
    """What one carrier's leg needs besides its socket."""

    channel: str  # the carrier's name, stored on the call row
    new_stream: Callable[[Note], CarrierStream]
    has_stop: bool  # False: the socket closing is the caller's hang-up (Plivo, Vonage)


async def send_frames(socket: MediaSocket, frames: Iterable[Frame]) -> None:
    for frame in frames:
        if isinstance(frame, bytes):
            await socket.send_bytes(frame)
        else:
            await socket.send_text(frame)


class CarrierLeg:
    """One started carrier media stream; implements :class:`phonebridge.calls.leg.Leg`."""

    supports_marks = True

    def __init__(
        self,
        socket: MediaSocket,
        stream: CarrierStream,
        spec: LegSpec,
        *,
        sample_rate: int,
        queued: Iterable[wire.StreamEvent] = (),
        before_close: Callable[[], Awaitable[None]] | None = None,
        call_sid: str = "",
    ) -> None:
        assert stream.started is not None, "read the stream's start first"
        self.channel = spec.channel
        # The carrier's own call id (what its REST API and support know it by).
        self.stream_id = stream.started.call_id or stream.started.stream_id
        self.sample_rate = sample_rate
        self._socket = socket
        self._stream = stream
        self._spec = spec
        self._queued = collections.deque(queued)
        self._before_close = before_close
        self._call_sid = call_sid
        self._samples = 0  # caller samples delivered, at the leg's rate
        self._ended: LegEnded | None = None
        self._closed = False
        wire_rate = stream.sample_rate
        self._inbound = None if wire_rate == sample_rate else RatioResampler(wire_rate, sample_rate)
        self._outbound = (
            None if wire_rate == sample_rate else RatioResampler(sample_rate, wire_rate)
        )

    async def receive(self) -> LegEvent | None:
        while self._ended is None:
            if self._queued:
                event = self._translate(self._queued.popleft())
                if event is not None:
                    return event
                continue
            try:
                raw = await self._socket.receive()
                if raw is None:
                    self._queued.extend(self._stream.socket_closed())
                    if not self._queued:  # closed before start or after the end
                        return self._end(CallEndReason.CALLER_DROPPED, "media socket closed")
                    continue
                self._queued.extend(self._stream.receive(raw, 0.0))
            except RemoteProtocolError as exc:
                # A carrier never sends malformed messages; one that arrives means
                # the stream is corrupt or not the carrier's: end the call (the
                # carrier then runs its fallback) and read no further.
                log.warning(
                    "%s protocol error: %s", self.channel, exc, extra={"call_sid": self._call_sid}
                )
                return self._end(CallEndReason.PROTOCOL_ERROR, str(exc))
            if not self._queued:
                return None
        return self._ended

    def _translate(self, event: wire.StreamEvent) -> LegEvent | None:
        match event:
            case wire.CallerAudio(pcm16=pcm):
                if self._inbound is not None:
                    pcm = self._inbound.push(pcm)
                at = self._samples
                self._samples += len(pcm) // 2
                return CallerAudio(pcm, self.sample_rate, at)
            case wire.DigitPressed(digit=digit):
                return KeyPress(digit)
            case wire.MarkPlayed(name=name):
                return PlaybackMark(name)
            case wire.StreamEnded(reason=reason):
                if reason == "socket closed" and self._spec.has_stop:
                    return self._end(
                        CallEndReason.CALLER_DROPPED, "media socket closed without stop"
                    )
                return self._end(CallEndReason.CALLER_HANGUP, reason)
        return None  # a clear acknowledged, a second start ignored by the stream

    def _end(self, reason: CallEndReason, detail: str) -> LegEnded:
        self._ended = LegEnded(reason, detail)
        return self._ended

    async def play(self, pcm: bytes) -> None:
        if self._outbound is not None:
            pcm = self._outbound.push(pcm)
        await send_frames(self._socket, self._stream.audio(pcm))

    async def clear(self) -> None:
        await send_frames(self._socket, self._stream.clear())

    async def mark(self, name: str) -> None:
        await send_frames(self._socket, self._stream.mark(name))

    async def show_text(self, text: str) -> None:
        """A phone line carries no text."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._before_close is not None:
            try:
                await self._before_close()
            except PhonebridgeError as exc:
                log.error(
                    "%s: after-call action failed: %s",
                    self.channel,
                    exc,
                    extra={"call_sid": self._call_sid},
                )
        await self._socket.close()
        stats = self._stream.stats()
        if stats.unknown or stats.ignored_after_end:
            # Each kind was logged once as it came; the totals say how often.
            log.info(
                "%s stream: %d unknown or tolerated message(s), %d ignored after the end",
                self.channel,
                stats.unknown,
                stats.ignored_after_end,
                extra={"call_sid": self._call_sid},
            )
