"""The typed records of the call index (no database code: the web API imports these too).

Every datetime is timezone-aware UTC; constructing a record with a naive
datetime raises ``ValueError`` (a bug in the caller, caught before any I/O).
The tables are declared in :mod:`phonebridge.storage.index` (the webhook
outbox's queries live in :mod:`phonebridge.webhooks.outbox`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, ClassVar

CRASHED = "crashed"
"""``end_reason`` of a call whose process died (set at the next start-up)."""


class CallStatus(StrEnum):
    PENDING = "pending"  # webhook answered, media stream not here yet
    LIVE = "live"  # the stream is connected
    ENDED = "ended"


class _Unset(Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET
"""Marks a :class:`CallUpdate` field that should be left unchanged (None means "set NULL")."""


def _require_aware(owner: object) -> None:
    for f in fields(owner):  # type: ignore[arg-type]
        value = getattr(owner, f.name)
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError(f"{type(owner).__name__}.{f.name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class CallStart:
    """What is known when the webhook arrives."""

    call_sid: str
    started_at: datetime
    from_number: str = ""
    to_number: str = ""
    persona: str = ""
    provider: str = ""
    stream_sid: str | None = None
    status: CallStatus = CallStatus.PENDING
    recording_path: str | None = None
    transcript_path: str | None = None
    channel: str = ""
    """The kind of leg that carried the call (``twilio``, ``browser``...); "" if unknown."""
    placed_by: str | None = None
    """The dashboard user who placed it (browser calls); None for callers."""
    sample_rate: int = 8000
    """The call's audio rate in Hz (the recording's rate): 8000 for narrowband legs."""

    def __post_init__(self) -> None:
        _require_aware(self)


@dataclass(frozen=True, slots=True)
class CallUpdate:
    """Fields to change on a call; each left at :data:`UNSET` is untouched."""

    stream_sid: str | _Unset | None = UNSET
    status: CallStatus | _Unset = UNSET
    from_number: str | _Unset = UNSET
    to_number: str | _Unset = UNSET
    persona: str | _Unset = UNSET
    provider: str | _Unset = UNSET
    model_ready_at: datetime | _Unset | None = UNSET
    model_socket_seconds: float | _Unset | None = UNSET
    first_agent_audio_seconds: float | _Unset | None = UNSET
    recording_path: str | _Unset | None = UNSET
    transcript_path: str | _Unset | None = UNSET
    error: str | _Unset | None = UNSET
    files_expired_at: datetime | _Unset | None = UNSET
    files_stored_at: datetime | _Unset | None = UNSET
    transfer_to: str | _Unset | None = UNSET
    transfer_mode: str | _Unset | None = UNSET
    transfer_at: datetime | _Unset | None = UNSET
    transfer_result: str | _Unset | None = UNSET

    def __post_init__(self) -> None:
        _require_aware(self)

    def changed(self) -> dict[str, Any]:
        """The fields that are set, by column name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not UNSET
        }


@dataclass(frozen=True, slots=True)
class CallEnd:
    """How a call ended. ``ended_by``: who hung up (``caller``, ``agent``, ``system``)."""

    ended_at: datetime
    end_reason: str
    ended_by: str | None = None
    model_socket_seconds: float | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row of the call index."""

    call_sid: str
    stream_sid: str | None
    from_number: str
    to_number: str
    persona: str
    provider: str
    status: CallStatus
    started_at: datetime
    model_ready_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float | None
    end_reason: str | None
    ended_by: str | None
    model_socket_seconds: float | None
    first_agent_audio_seconds: float | None
    """Seconds from the answer (stream start) to the first audible agent audio on the
    caller's line; None when the agent never spoke (or the call was never answered)."""
    recording_path: str | None
    transcript_path: str | None
    error: str | None
    files_expired_at: datetime | None
    updated_at: datetime
    channel: str = ""
    placed_by: str | None = None
    replica: str | None = None
    """The replica that holds (or held) the call; None for a single process."""
    sample_rate: int = 8000
    files_stored_at: datetime | None = None
    """When the recording and transcript reached the object store (None: not there)."""
    transfer_to: str | None = None
    """Where the caller was handed (E.164 or sip:); None: no transfer was tried."""
    transfer_mode: str | None = None
    """``cold`` or ``warm`` (calls/transfer/)."""
    transfer_at: datetime | None = None
    """When the hand-off started (the trigger fired)."""
    transfer_result: str | None = None
    """``dialled`` (cold), ``accepted``, ``declined``, ``unanswered``, ``abandoned``, ``failed``."""


@dataclass(frozen=True, slots=True)
class CallQuery:
    """Filters for :meth:`CallIndex.list_calls`; ``number`` matches part of From or To,
    ``since``/``until`` bound ``started_at`` (``since <= started_at < until``)."""

    MAX_LIMIT: ClassVar[int] = 1000

    number: str | None = None
    persona: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    end_reason: str | None = None
    status: CallStatus | None = None
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        _require_aware(self)
        if not 1 <= self.limit <= self.MAX_LIMIT:
            raise ValueError(f"limit must be 1..{self.MAX_LIMIT}")
        if self.offset < 0:
            raise ValueError("offset must be >= 0")


@dataclass(frozen=True, slots=True)
class CallPage:
    items: list[CallRecord] = field(default_factory=list)
    total: int = 0


# -- the webhook outbox (issue 15, "Post-call webhook") ---------------------------


class DeliveryState(StrEnum):
    PENDING = "pending"  # not delivered yet: retried with backoff
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up (past the retry window); kept for the operator


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One delivery of one call's summary to one URL."""

    id: str
    call_sid: str
    event: str
    url: str
    state: DeliveryState
    attempts: int
    created_at: float
    next_attempt_at: float
    delivered_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
