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


def split_frames(mulaw: bytes) -> list[bytes]:
    """160-byte frames; the last one padded with line silence."""
    frames = [mulaw[i : i + FRAME_BYTES] for i in range(0, len(mulaw), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        frames[-1] += bytes([MULAW_SILENCE]) * (FRAME_BYTES - len(frames[-1]))
    return frames


def hangup_time(
    audio_frames: int, hangup_after: float | None, tail: float, max_call: float
) -> float:
    """When the caller hangs up: as asked, else after the recording plus ``tail``."""
    if hangup_after is not None:
        return min(hangup_after, max_call)
    if audio_frames:
        return min(audio_frames * FRAME_SECONDS + tail, max_call)
    return max_call


def caller_timeline(
    frames: Sequence[bytes],
    *,
    end: float,
    gaps: Sequence[tuple[float, float]] = (),
    dtmf: Sequence[tuple[float, str]] = (),
) -> Iterator[CallerAction]:
    """Every action of the caller in time order, ending with :class:`HangUp` at ``end``."""
    presses = sorted((at + i * 0.1, digit) for at, digits in dtmf for i, digit in enumerate(digits))
    silence = bytes([MULAW_SILENCE]) * FRAME_BYTES
    pending = 0
    for index in range(math.ceil(round(end / FRAME_SECONDS, 6))):
        at = round(index * FRAME_SECONDS, 6)
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
