"""The Talk page's WebSocket protocol, sans-I/O: what the browser sends, what we send back.

Our own protocol (the page's JavaScript is its only client), kept as small as
a phone stream's. The socket is opened with a one-time ticket
(:mod:`~phonebridge.web.softphone.tickets`); then:

Browser -> bridge

- one text ``{"type": "start", "sampleRate": 24000}`` first, within
  :data:`START_TIMEOUT_SECONDS`: the call is admitted (guard, lease, model)
  only now, so a socket that never starts properly costs no model session;
- binary frames: caller audio, raw mono s16le PCM at the start's rate, any
  whole number of samples up to :data:`MAX_AUDIO_FRAME_BYTES` (the page
  sends 20 ms: 960 bytes at 24 kHz);
- text ``{"type": "mark", "name": …}`` (a mark we sent was played),
  ``{"type": "dtmf", "digit": "5"}``, ``{"type": "hangup"}``.

Bridge -> browser

- binary frames: agent audio, raw mono s16le PCM at the same rate;
- text ``{"type": "text", "text": …}`` (agent text as it arrives),
  ``{"type": "clear"}`` (drop queued agent audio), ``{"type": "mark", "name": …}``.

Why raw PCM rather than Opus from WebCodecs: 24 kHz PCM is 384 kb/s per
direction, nothing on loopback or a LAN and little on any uplink that can hold
a video call, and it costs the bridge no decode (~30 µs per 20 ms saved) and
the page no encoder (WebCodecs' ``AudioEncoder`` is missing from some browsers
and adds its own frame delay). ``bench/bench_audio.py --browser`` measures the
per-frame cost of this path.

Limits (each breach has one outcome: :class:`BrowserProtocolError`, carrying
the WebSocket close code the edge closes with, and the call ends with
``protocol_error``):

- a frame over :data:`MAX_AUDIO_FRAME_BYTES` / :data:`MAX_TEXT_CHARS`: 1009;
- anything before ``start``, a second ``start``, an odd-length frame, bad
  JSON, an unknown type: 1008;
- a flood: audio running more than :data:`MAX_LEAD_SECONDS` ahead of real
  time, or more than :data:`MAX_MESSAGES_PER_SECOND` messages in a second: 1008.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from phonebridge.errors import RemoteProtocolError

BROWSER_RATES: Final = frozenset({24_000})
"""What the page may send: the model's own rate (its AudioContext runs at it)."""
MAX_AUDIO_FRAME_BYTES: Final = 9_600  # 200 ms at 24 kHz; the page sends 20 ms
MAX_TEXT_CHARS: Final = 1_024
MAX_LEAD_SECONDS: Final = 1.0
MAX_MESSAGES_PER_SECOND: Final = 200  # the page sends ~50 (20 ms frames) plus a few marks
START_TIMEOUT_SECONDS: Final = 5.0
POLICY_VIOLATION: Final = 1008
MESSAGE_TOO_BIG: Final = 1009
_DIGITS: Final = frozenset("0123456789*#ABCD")


class BrowserProtocolError(RemoteProtocolError):
    """The page broke the protocol; ``close_code`` is what the socket is closed with."""

    def __init__(self, message: str, close_code: int = POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class Start:
    sample_rate: int


@dataclass(frozen=True, slots=True)
class Audio:
    """Caller PCM; ``at_sample`` counts the samples the page sent before it."""

    pcm: bytes
    at_sample: int


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    name: str


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


BrowserEvent = Start | Audio | MarkPlayed | Digit | Hangup


class BrowserStream:
    """One Talk socket's state: started or not, samples received, the flood counters."""

    def __init__(self) -> None:
        self.start: Start | None = None
        self._samples = 0
        self._audio_origin: float | None = None
        self._window_start = 0.0
        self._window_messages = 0

    def receive(self, message: str | bytes, now: float) -> BrowserEvent | None:
        """One WebSocket message; raises :class:`BrowserProtocolError`."""
        self._count_message(now)
        if isinstance(message, bytes):
            return self._audio(message, now)
        if len(message) > MAX_TEXT_CHARS:
            raise BrowserProtocolError(
                f"text message of {len(message)} chars (limit {MAX_TEXT_CHARS})", MESSAGE_TOO_BIG
            )
        try:
            doc = json.loads(message)
        except (ValueError, RecursionError) as exc:
            raise BrowserProtocolError(f"invalid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise BrowserProtocolError("a text message must be a JSON object with a type")
        kind = doc["type"]
        if kind == "start":
            if self.start is not None:
                raise BrowserProtocolError("a second start")
            rate = doc.get("sampleRate")
            if not isinstance(rate, int) or rate not in BROWSER_RATES:
                raise BrowserProtocolError(f"sampleRate must be one of {sorted(BROWSER_RATES)}")
            self.start = Start(rate)
            return self.start
        if self.start is None:
            raise BrowserProtocolError(f"{kind!r} before start")
        if kind == "hangup":
            return Hangup()
        if kind == "mark":
            name = doc.get("name")
            if not isinstance(name, str):
                raise BrowserProtocolError("mark without a name")
            return MarkPlayed(name)
        if kind == "dtmf":
            digit = doc.get("digit")
            if not isinstance(digit, str) or digit not in _DIGITS:
                raise BrowserProtocolError("dtmf digit must be one of 0-9 * # A-D")
            return Digit(digit)
        raise BrowserProtocolError(f"unknown message type {kind[:40]!r}")

    def _audio(self, data: bytes, now: float) -> Audio:
        if len(data) > MAX_AUDIO_FRAME_BYTES:
            raise BrowserProtocolError(
                f"audio frame of {len(data)} bytes (limit {MAX_AUDIO_FRAME_BYTES})",
                MESSAGE_TOO_BIG,
            )
        if self.start is None:
            raise BrowserProtocolError("audio before start")
        if len(data) % 2:
            raise BrowserProtocolError("audio frame with an odd number of bytes")
        if self._audio_origin is None:
            self._audio_origin = now
        at = self._samples
        self._samples += len(data) // 2
        lead = self._samples / self.start.sample_rate - (now - self._audio_origin)
        if lead > MAX_LEAD_SECONDS:
            raise BrowserProtocolError(f"audio flood: {lead:.2f} s ahead of real time")
        return Audio(data, at)

    def _count_message(self, now: float) -> None:
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._window_messages = 0
        self._window_messages += 1
        if self._window_messages > MAX_MESSAGES_PER_SECOND:
            raise BrowserProtocolError(
                f"message flood: over {MAX_MESSAGES_PER_SECOND} messages in a second"
            )


def text_message(text: str) -> str:
    return json.dumps({"type": "text", "text": text})


def mark_message(name: str) -> str:
    return json.dumps({"type": "mark", "name": name})


CLEAR_MESSAGE: Final = '{"type":"clear"}'
