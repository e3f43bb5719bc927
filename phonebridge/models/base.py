"""The model-session interface every PersonaPlex provider implements.

A call owns exactly one :class:`ModelSession`. The call path only ever
speaks its leg's audio to it: mono signed 16-bit little-endian PCM at the
leg's rate (:attr:`SessionRequest.sample_rate`: 8 kHz for a phone line,
16 or 24 kHz for a wideband leg such as the browser), in 20 ms frames
(:func:`frame_bytes`), and hears the same back at that rate. Each provider
turns that into its own wire format and back: Ogg/Opus for self-hosted
PersonaPlex and PolarGrid (libopus encodes from and decodes to the leg's rate
itself: the model side stays 24 kHz Opus), raw 24 kHz PCM in msgpack for fal
(through the polyphase resamplers for an 8 kHz leg, untouched for a 24 kHz
one). Keeping the session at the leg's rate means the Opus providers need no
resampler at all: the load benchmark measured it as the largest single saving
per call (BENCHMARKS.md), and a wideband leg reaches the model wideband.

Life cycle::

    session = factory.create(request)
    await session.open()              # connect + wait until the model is ready
    await session.send_audio(frame)   # every 20 ms, silence included
    async for event in session.events():
        ...                           # AgentAudio / AgentText / SessionEnded
    await session.close()             # idempotent; closes the socket at once

``events()`` always finishes with exactly one :class:`SessionEnded`, whoever
ended the session. ``close()`` may be called at any time, from any task, any
number of times, and must close the model socket immediately (hosted providers
bill by wall-clock while it is open).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from phonebridge.errors import ConfigError

SAMPLE_RATE = 8_000  # the phone line's rate (Twilio's mu-law, PROTOCOLS.md §1): the default
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = FRAME_SAMPLES * 2
LEG_RATES: frozenset[int] = frozenset({8_000, 16_000, 24_000})
"""Rates a session can speak: narrowband phone lines, wideband and the model's own 24 kHz."""


def frame_bytes(sample_rate: int) -> int:
    """Bytes in one 20 ms frame of mono s16le at ``sample_rate``."""
    return sample_rate // 50 * 2


VOICES: frozenset[str] = frozenset(
    [f"NATF{i}" for i in range(4)]
    + [f"NATM{i}" for i in range(4)]
    + [f"VARF{i}" for i in range(5)]
    + [f"VARM{i}" for i in range(5)]
)
"""The 18 voices every PersonaPlex deployment ships (PROTOCOLS.md §2.1), without ``.pt``."""


class EndReason(StrEnum):
    """Why a model session ended, as recorded on the call."""

    CLOSED_BY_US = "closed_by_us"  # close() was called: the normal end of a call
    REMOTE_CLOSED = "remote_closed"  # the server closed the socket (the only error signal in §2)
    REMOTE_ERROR = "remote_error"  # the provider reported an error (fal x-fal-error, close != 1000)
    TIMEOUT = "timeout"  # the provider timed out (fal TIMEOUT) or we gave up waiting
    PROTOCOL_ERROR = "protocol_error"  # the server sent something we cannot parse


@dataclass(frozen=True, slots=True)
class AgentAudio:
    """Agent speech: mono s16le PCM at the session's rate, any length (80 ms pages self-hosted)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class AgentText:
    """One text piece the model emitted (a SentencePiece token, leading space kept)."""

    text: str


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session is over; no event follows it."""

    reason: EndReason
    detail: str = ""


ModelEvent = AgentAudio | AgentText | SessionEnded


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What a call asks of a model: who to be and with which voice."""

    prompt: str
    voice: str  # one of VOICES, without ".pt"
    sample_rate: int = SAMPLE_RATE
    """The leg's rate: what send_audio takes and AgentAudio carries (one of LEG_RATES)."""

    def __post_init__(self) -> None:
        if self.sample_rate not in LEG_RATES:
            raise ConfigError(f"a session speaks {sorted(LEG_RATES)} Hz, not {self.sample_rate}")


@dataclass(slots=True)
class SessionTimings:
    """Monotonic timestamps (seconds, from the injected clock) a user cares about.

    ``None`` means "did not happen (yet)".
    """

    started: float | None = None  # open() called
    connected: float | None = None  # WebSocket upgrade completed
    ready: float | None = None  # handshake received: the model listens
    first_audio: float | None = None  # first agent audio decoded
    closed: float | None = None  # socket closed (by either side)

    @property
    def connect_seconds(self) -> float | None:
        if self.started is None or self.connected is None:
            return None
        return self.connected - self.started

    @property
    def time_to_ready(self) -> float | None:
        if self.started is None or self.ready is None:
            return None
        return self.ready - self.started

    def socket_seconds(self, now: float) -> float:
        """Seconds the model socket has been open: what hosted providers bill."""
        if self.connected is None:
            return 0.0
        end = self.closed if self.closed is not None else now
        return max(0.0, end - self.connected)


@runtime_checkable
class ModelSession(Protocol):
    """One PersonaPlex conversation over one socket."""

    provider: str
    """Provider name as used in persona files: ``personaplex``, ``polargrid`` or ``fal``."""

    timings: SessionTimings

    supports_end_of_turn: bool
    supports_text_injection: bool

    async def open(self) -> None:
        """Connect and wait until the model is ready.

        Raises a :class:`phonebridge.errors.ModelError` subclass on failure; the
        socket is closed before it propagates.
        """

    async def send_audio(self, pcm: bytes) -> None:
        """Send one 20 ms frame at the request's rate (320 bytes at 8 kHz). Never blocks for long.

        After the session ended this is a no-op: the event stream reports why.
        """

    def events(self) -> AsyncIterator[ModelEvent]:
        """Agent audio and text as they arrive, then exactly one SessionEnded."""

    async def end_of_turn(self) -> None:
        """Tell the model the caller finished a turn (PolarGrid ``eos``).

        Raises :class:`phonebridge.errors.LocalProtocolError` if unsupported.
        """

    async def inject_text(self, text: str) -> None:
        """Inject text into the conversation (PolarGrid ``0x02``).

        Raises :class:`phonebridge.errors.LocalProtocolError` if unsupported.
        """

    async def close(self) -> None:
        """Close the socket now. Idempotent; safe from any task."""


class ModelSessionFactory(Protocol):
    """Makes sessions for one provider (already configured with URL and key)."""

    provider: str

    def create(self, request: SessionRequest, *, server_url: str | None = None) -> ModelSession:
        """A new, unopened session. ``server_url`` picks a self-hosted server (a lease)."""


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """Static facts about a provider, for the admission logic."""

    name: str
    exclusive_servers: tuple[str, ...] = field(default_factory=tuple)
    """Self-hosted: one call per server at a time (§2.5); empty for hosted providers."""
