"""The overview's figures (phonebridge/storage/stats.py): ranges, kinds, percentiles, bounds.

The API tests (tests/web/test_overview_api.py) hold the figures to real call
rows; these hold the pure parts to their definitions and the scan to its limit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallEnd, CallStart, CallUpdate
from phonebridge.storage.stats import (
    MAX_BUCKETS,
    CallFacts,
    RangeTooLarge,
    align_range,
    call_kind,
    overview,
    percentiles,
    summarize,
)

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)

# `database_url` (tests/storage/conftest.py): SQLite, and a real PostgreSQL.


def facts(
    started_at: datetime, end_reason: str | None = "caller_hangup", **values: object
) -> CallFacts:
    defaults: dict[str, object] = {
        "answered": True,
        "duration_seconds": 60.0,
        "provider": "personaplex",
        "model_socket_seconds": 59.0,
        "first_agent_audio_seconds": 0.5,
    }
    defaults.update(values)
    return CallFacts(started_at=started_at, end_reason=end_reason, **defaults)  # type: ignore[arg-type]


@given(st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_numpys_linear_ones(values: list[float]) -> None:
    found = percentiles(values)
    assert found.count == len(values)
    assert found.p50 == pytest.approx(float(np.percentile(values, 50)), abs=1e-9)
    assert found.p95 == pytest.approx(float(np.percentile(values, 95)), abs=1e-9)


def test_no_values_no_percentiles() -> None:
    assert percentiles([]) == percentiles([])
    empty = percentiles([])
    assert (empty.p50, empty.p95, empty.count) == (None, None, 0)


def test_ranges_widen_to_whole_buckets_and_refuse_nonsense() -> None:
    assert align_range(T0, T0 + timedelta(hours=3), "hour") == (T0, T0 + timedelta(hours=3))
    inside = align_range(T0 + timedelta(minutes=20), T0 + timedelta(hours=2, seconds=1), "hour")
    assert inside == (T0, T0 + timedelta(hours=3))
    day = align_range(T0, T0 + timedelta(minutes=1), "day")
    assert day == (T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))
    # another zone is the same instant: buckets are UTC hours
    toronto = T0.astimezone(__import__("zoneinfo").ZoneInfo("America/Toronto"))
    assert align_range(toronto, toronto + timedelta(hours=1), "hour") == (
        T0,
        T0 + timedelta(hours=1),
    )
    with pytest.raises(ValueError, match="ends before it starts"):
        align_range(T0, T0, "hour")
    with pytest.raises(ValueError, match="naive"):
        align_range(T0.replace(tzinfo=None), T0 + timedelta(hours=1), "hour")
    assert align_range(T0, T0 + timedelta(hours=MAX_BUCKETS), "hour")[1] == T0 + timedelta(
        hours=MAX_BUCKETS
    )
    with pytest.raises(RangeTooLarge, match="too many"):
        align_range(T0, T0 + timedelta(hours=MAX_BUCKETS + 1), "hour")


def test_each_call_is_exactly_one_kind() -> None:
    assert call_kind(facts(T0, "busy", answered=False)) == "busy"
    assert call_kind(facts(T0, "rate_limited", answered=False)) == "refused"
    assert call_kind(facts(T0, "no_stream", answered=False)) == "unanswered"
    assert call_kind(facts(T0, "model_failed")) == "answered"  # the stream came
    assert call_kind(facts(T0, None)) == "answered"  # live


@given(
    st.lists(
        st.tuples(
            st.integers(-3600, 5 * 3600),  # seconds from T0: some outside the range
            st.sampled_from(["caller_hangup", "busy", "rate_limited", "no_stream", None]),
            st.floats(0, 600),
            st.sampled_from(["personaplex", "polargrid", ""]),
        ),
        max_size=60,
    )
)
def test_buckets_add_up_to_the_totals(rows: list[tuple[int, str | None, float, str]]) -> None:
    calls = [
        facts(
            T0 + timedelta(seconds=offset),
            reason,
            answered=reason not in ("busy", "rate_limited", "no_stream"),
            duration_seconds=None if reason is None else duration,
            provider=provider,
            model_socket_seconds=duration if provider else 0.0,
        )
        for offset, reason, duration, provider in rows
    ]
    result = summarize(calls, T0, T0 + timedelta(hours=4), "hour")
    inside = [c for c in calls if T0 <= c.started_at < T0 + timedelta(hours=4)]
    assert len(result.buckets) == 4
    assert result.calls == len(inside) == sum(b.calls for b in result.buckets)
    for kind, count in result.kinds.items():
        assert count == sum(b.kinds[kind] for b in result.buckets)
    assert result.minutes == pytest.approx(sum(b.minutes for b in result.buckets))
    for provider, seconds in result.socket_seconds.items():
        assert seconds == pytest.approx(sum(b.socket_seconds[provider] for b in result.buckets))
    assert sum(result.end_reasons.values()) == len(inside)
    assert result.end_reasons.get("in_progress", 0) == sum(
        1 for c in inside if c.end_reason is None
    )
    assert "" not in result.socket_seconds  # busy rows have no provider: no cost line


async def test_the_scan_is_bounded_and_database_trouble_is_a_storage_error(
    database_url: str,
) -> None:
    async with await CallIndex.create(database_url) as index:
        for n in range(6):  # five in the 09:00 hour, one at 11:00
            sid = f"CA{n:032x}"
            started = T0 + timedelta(minutes=10 * n if n < 5 else 120)
            await index.start_call(CallStart(call_sid=sid, started_at=started, provider="fal"))
            await index.finish_call(
                sid, CallEnd(ended_at=started, end_reason="no_stream", model_socket_seconds=1.5)
            )
            if n < 5:
                await index.update(sid, CallUpdate(first_agent_audio_seconds=0.1 * (n + 1)))
        whole = await overview(index.engine, T0, T0 + timedelta(hours=1), "hour", max_rows=5)
        assert whole.calls == 5
        assert whole.socket_seconds == {"fal": 7.5}
        # percentiles in Python: the same on both databases (0.1 ... 0.5)
        assert whole.first_audio.p50 == pytest.approx(0.3)
        assert whole.first_audio.p95 == pytest.approx(0.48)
        assert whole.buckets[0].start == T0
        with pytest.raises(RangeTooLarge, match="more than 4 calls"):
            await overview(index.engine, T0, T0 + timedelta(hours=1), "hour", max_rows=4)
        # the limit counts the range's calls, not the table's
        later = T0 + timedelta(hours=2)
        part = await overview(index.engine, later, later + timedelta(minutes=5), "hour", max_rows=4)
        assert part.calls == 1
        async with index.engine.begin() as conn:
            await conn.execute(text("DROP TABLE calls"))
        with pytest.raises(StorageError, match="overview failed"):
            await overview(index.engine, T0, T0 + timedelta(hours=1), "hour")
