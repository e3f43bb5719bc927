"""The caller's side of a call as a timeline, sans-I/O.

Twilio sends one ``media`` message per 20 ms of the caller's line: the
recording while it lasts, then line silence until the caller hangs up. During a
*gap* it sends nothing at all (PROTOCOLS.md §1.2: some calls carry no media
during silence); the line's clock keeps running, so the ``timestamp`` of the
next frame jumps. DTMF messages arrive at their own times between frames.

:func:`caller_timeline` yields what to send and when (seconds since the stream
started); the I/O layer only waits for each time (or not, in fast mode).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from phonebridge.simulators.phone.playback import MULAW_SILENCE

FRAME_BYTES = 160
FRAME_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class SendMedia:
    at: float
    payload: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class SendDtmf:
    at: float
    digit: str


@dataclass(frozen=True, slots=True)
class HangUp:
    at: float


CallerAction = SendMedia | SendDtmf | HangUp


def split_frames(
    mulaw: bytes, frame_bytes: int = FRAME_BYTES, silence: int = MULAW_SILENCE
) -> list[bytes]:
    """``frame_bytes`` frames (160: 20 ms of mu-law); the last one padded with line silence."""
    frames = [mulaw[i : i + frame_bytes] for i in range(0, len(mulaw), frame_bytes)]
    if frames and len(frames[-1]) < frame_bytes:
        frames[-1] += bytes([silence]) * (frame_bytes - len(frames[-1]))
    return frames


def hangup_time(
    audio_frames: int,
    hangup_after: float | None,
    tail: float,
    max_call: float,
    frame_seconds: float = FRAME_SECONDS,
) -> float:
    """When the caller hangs up: as asked, else after the recording plus ``tail``."""
    if hangup_after is not None:
        return min(hangup_after, max_call)
    if audio_frames:
        return min(audio_frames * frame_seconds + tail, max_call)
    return max_call


def caller_timeline(
    frames: Sequence[bytes],
    *,
    end: float,
    gaps: Sequence[tuple[float, float]] = (),
    dtmf: Sequence[tuple[float, str]] = (),
    silence: bytes = bytes([MULAW_SILENCE]) * FRAME_BYTES,
    frame_seconds: float = FRAME_SECONDS,
) -> Iterator[CallerAction]:
    """Every action of the caller in time order, ending with :class:`HangUp` at ``end``.

    Defaults are Twilio's line (20 ms of mu-law per frame); a carrier flavour
    passes its own frame length and silence (Exotel: 100 ms of PCM16).
    """
    presses = sorted((at + i * 0.1, digit) for at, digits in dtmf for i, digit in enumerate(digits))
    pending = 0
    for index in range(math.ceil(round(end / frame_seconds, 6))):
        at = round(index * frame_seconds, 6)
        while pending < len(presses) and presses[pending][0] <= at:
            yield SendDtmf(at=presses[pending][0], digit=presses[pending][1])
            pending += 1
        if any(start <= at < start + duration for start, duration in gaps):
            continue
        payload = frames[index] if index < len(frames) else silence
        yield SendMedia(at=at, payload=payload, timestamp_ms=round(at * 1000))
    for at, digit in presses[pending:]:
        if at < end:
            yield SendDtmf(at=at, digit=digit)
    yield HangUp(at=end)
