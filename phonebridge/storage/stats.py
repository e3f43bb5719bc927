"""Figures for the operator overview (issue 13): calls, minutes, model cost, end reasons.

Read-only. :func:`fetch_call_facts` reads the narrow columns of the calls that
*started* in a time range from the call index; :func:`summarize` is pure and
turns them into time buckets and totals. Everything is computed in Python over
the range's rows rather than in SQL, because what is needed is not portable
SQL: truncating a timestamp to the hour is ``strftime`` in SQLite and
``date_trunc`` in PostgreSQL, and percentiles are ``percentile_cont`` in
PostgreSQL and missing from SQLite. The scan is bounded (:data:`MAX_ROWS`);
a range holding more calls is refused with :class:`RangeTooLarge`, so the
operator narrows it instead of the dashboard eating the bridge's memory.

Buckets are whole UTC hours or days: the range is widened to bucket edges
(start floored, end ceiled), and the figures cover exactly that widened range,
so the buckets always add up to the totals.

Which kind a call is, exactly one of:

- ``busy``: no slot for it (``end_reason`` busy); the caller heard the busy message;
- ``refused``: the toll-fraud guard refused it (``rate_limited``);
- ``answered``: a media stream came (the row has a stream SID);
- ``unanswered``: none of those (the stream never came, a crash while ringing).

Time to first agent audio is the row's ``first_agent_audio_seconds`` (from the
answer to the first audible agent audio); its p50 and p95 are the
"inclusive" quantiles of :func:`statistics.quantiles` (linear interpolation
between the closest ranks, as numpy's default), over the calls that have one.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from phonebridge.errors import StorageError
from phonebridge.storage.index import calls

__all__ = [
    "BUCKET_SECONDS",
    "CALL_KINDS",
    "MAX_BUCKETS",
    "MAX_ROWS",
    "BucketStats",
    "CallFacts",
    "Overview",
    "OverviewBuilder",
    "Percentiles",
    "RangeTooLarge",
    "align_range",
    "call_kind",
    "fetch_call_facts",
    "overview",
    "percentiles",
    "summarize",
]

Bucket = Literal["hour", "day"]
CallKind = Literal["answered", "busy", "refused", "unanswered"]

BUCKET_SECONDS: dict[Bucket, int] = {"hour": 3600, "day": 86400}
CALL_KINDS: tuple[CallKind, ...] = ("answered", "busy", "refused", "unanswered")
MAX_BUCKETS = 2000
"""About 83 days by the hour, five years by the day: more bars than a screen has pixels."""
MAX_ROWS = 250_000
"""Calls one overview may scan (streamed in partitions: only the
first-audio times are held, a few MB)."""
_PARTITION = 250  # rows per fetch: the event loop gets a turn between partitions

_BUSY = "busy"
_REFUSED = "rate_limited"
IN_PROGRESS = "in_progress"
"""The ``end_reason`` bucket of calls that have not ended yet."""


class RangeTooLarge(ValueError):
    """The range holds more calls than :data:`MAX_ROWS`, or more buckets than allowed."""


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the overview reads of one call row."""

    started_at: datetime
    answered: bool
    """The row has a stream SID: the call reached a conversation."""
    duration_seconds: float | None
    end_reason: str | None
    provider: str
    model_socket_seconds: float | None
    first_agent_audio_seconds: float | None


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float | None
    p95: float | None
    count: int


@dataclass(slots=True)
class BucketStats:
    start: datetime
    calls: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    minutes: float = 0.0
    socket_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    first_audio: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Overview:
    start: datetime
    end: datetime
    bucket: Bucket
    buckets: list[BucketStats]
    kinds: dict[str, int]
    minutes: float
    socket_seconds: dict[str, float]
    """Model-socket seconds by provider (what hosted providers bill)."""
    provider_calls: dict[str, int]
    end_reasons: dict[str, int]
    first_audio: Percentiles
    bucket_first_audio: list[Percentiles]

    @property
    def calls(self) -> int:
        return sum(self.kinds.values())


def call_kind(facts: CallFacts) -> CallKind:
    if facts.end_reason == _BUSY:
        return "busy"
    if facts.end_reason == _REFUSED:
        return "refused"
    return "answered" if facts.answered else "unanswered"


def percentiles(values: list[float]) -> Percentiles:
    """p50 and p95 of ``values`` (None when empty); see the module docstring."""
    if not values:
        return Percentiles(None, None, 0)
    if len(values) == 1:
        return Percentiles(values[0], values[0], 1)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return Percentiles(cuts[49], cuts[94], len(values))


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    whole = int((moment - epoch).total_seconds() // seconds)
    return epoch + timedelta(seconds=whole * seconds)


def align_range(since: datetime, until: datetime, bucket: Bucket) -> tuple[datetime, datetime]:
    """``[since, until)`` widened to whole UTC buckets; raises ValueError on a bad range."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("naive datetime: pass timezone-aware UTC times")
    if until <= since:
        raise ValueError("the range ends before it starts")
    seconds = BUCKET_SECONDS[bucket]
    start = _floor(since.astimezone(UTC), seconds)
    end = _floor(until.astimezone(UTC), seconds)
    if end < until:
        end += timedelta(seconds=seconds)
    count = int((end - start).total_seconds()) // seconds
    if count > MAX_BUCKETS:
        raise RangeTooLarge(
            f"{count} {bucket}s is too many to draw (at most {MAX_BUCKETS}): "
            f"choose a shorter range or a longer bucket"
        )
    return start, end


class OverviewBuilder:
    """Totals calls one at a time (rows are streamed in, never all held at once)."""

    def __init__(self, start: datetime, end: datetime, bucket: Bucket) -> None:
        self._start, self._end, self._bucket = start, end, bucket
        self._seconds = BUCKET_SECONDS[bucket]
        count = int((end - start).total_seconds()) // self._seconds
        self._buckets = [
            BucketStats(start + timedelta(seconds=i * self._seconds)) for i in range(count)
        ]
        self._kinds: Counter[str] = Counter({kind: 0 for kind in CALL_KINDS})
        self._socket: defaultdict[str, float] = defaultdict(float)
        self._provider_calls: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()
        self._first_audio: list[float] = []
        self._minutes = 0.0
        self.count = 0

    def add(self, call: CallFacts) -> None:
        if not self._start <= call.started_at < self._end:
            return  # the query bounds it already; a caller's list may not
        self.count += 1
        slot = self._buckets[int((call.started_at - self._start).total_seconds() // self._seconds)]
        kind = call_kind(call)
        slot.calls += 1
        slot.kinds[kind] += 1
        self._kinds[kind] += 1
        self._reasons[call.end_reason or IN_PROGRESS] += 1
        if call.duration_seconds is not None:
            slot.minutes += call.duration_seconds / 60
            self._minutes += call.duration_seconds / 60
        if call.model_socket_seconds or call.provider:
            # Busy and refused rows have no provider and no socket: no cost to show.
            provider = call.provider or "unknown"
            slot.socket_seconds[provider] += call.model_socket_seconds or 0.0
            self._socket[provider] += call.model_socket_seconds or 0.0
            self._provider_calls[provider] += 1
        if call.first_agent_audio_seconds is not None:
            slot.first_audio.append(call.first_agent_audio_seconds)
            self._first_audio.append(call.first_agent_audio_seconds)

    def result(self) -> Overview:
        return Overview(
            start=self._start,
            end=self._end,
            bucket=self._bucket,
            buckets=self._buckets,
            kinds=dict(self._kinds),
            minutes=self._minutes,
            socket_seconds=dict(self._socket),
            provider_calls=dict(self._provider_calls),
            end_reasons=dict(self._reasons),
            first_audio=percentiles(self._first_audio),
            bucket_first_audio=[percentiles(b.first_audio) for b in self._buckets],
        )


def summarize(
    facts: Iterable[CallFacts], start: datetime, end: datetime, bucket: Bucket
) -> Overview:
    """Bucket and total the calls that started in ``[start, end)`` (aligned bounds)."""
    builder = OverviewBuilder(start, end, bucket)
    for call in facts:
        builder.add(call)
    return builder.result()


def _add_rows(builder: OverviewBuilder, rows: Sequence[Any]) -> None:
    for started_at, stream_sid, duration, end_reason, provider, socket, first_audio in rows:
        builder.add(
            CallFacts(
                started_at=started_at,
                answered=stream_sid is not None,
                duration_seconds=duration,
                end_reason=end_reason,
                provider=provider or "",
                model_socket_seconds=socket,
                first_agent_audio_seconds=first_audio,
            )
        )


def _query(start: datetime, end: datetime, limit: int) -> Select[Any]:
    return (
        select(
            calls.c.started_at,
            calls.c.stream_sid,
            calls.c.duration_seconds,
            calls.c.end_reason,
            calls.c.provider,
            calls.c.model_socket_seconds,
            calls.c.first_agent_audio_seconds,
        )
        .where(calls.c.started_at >= start, calls.c.started_at < end)
        .order_by(calls.c.started_at)
        .limit(limit)
    )


async def fetch_call_facts(
    engine: AsyncEngine,
    start: datetime,
    end: datetime,
    into: OverviewBuilder,
    *,
    max_rows: int = MAX_ROWS,
) -> None:
    """Stream the calls that started in ``[start, end)`` into ``into``.

    Raises :class:`RangeTooLarge` past ``max_rows`` calls and :class:`StorageError`
    when the index cannot be read.
    """
    seen = 0
    try:
        async with engine.connect() as conn:
            result = await conn.stream(_query(start, end, max_rows + 1))
            async for partition in result.partitions(_PARTITION):
                seen += len(partition)
                if seen > max_rows:
                    raise RangeTooLarge(
                        f"the range holds more than {max_rows} calls: choose a shorter range"
                    )
                _add_rows(into, partition)
    except (SQLAlchemyError, OSError) as exc:
        cause = getattr(exc, "orig", None) or exc
        raise StorageError(f"call index: overview failed: {cause}") from exc


async def overview(
    engine: AsyncEngine,
    since: datetime,
    until: datetime,
    bucket: Bucket,
    *,
    max_rows: int = MAX_ROWS,
) -> Overview:
    """Align the range to ``bucket``, stream its calls in and total them."""
    start, end = align_range(since, until, bucket)
    builder = OverviewBuilder(start, end, bucket)
    await fetch_call_facts(engine, start, end, builder, max_rows=max_rows)
    # Sorting for the percentiles takes tens of ms on a big range: not on the
    # event loop that carries the calls' audio.
    return await asyncio.to_thread(builder.result)
