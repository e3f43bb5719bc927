"""The call index on SQLite and a real PostgreSQL: rows, filters, pagination, crash recovery
(per replica too) and database trouble.

Tests taking the ``index`` fixture run once per database (``database_url`` in
conftest.py); the ones about SQLite files and locks run on SQLite only.
"""

from __future__ import annotations

import sqlite3
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex, default_database_url, normalize_database_url
from phonebridge.storage.models import (
    CRASHED,
    CallEnd,
    CallQuery,
    CallStart,
    CallStatus,
    CallUpdate,
)
from phonebridge.storage.recording import wav_header

from ..realservers.postgres_server import PostgresServer

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def sid(n: int) -> str:
    return f"CA{n:032x}"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def index(database_url: str, clock: FakeClock) -> AsyncIterator[CallIndex]:
    idx = await CallIndex.create(database_url, clock=clock)
    try:
        yield idx
    finally:
        await idx.close()


def start(n: int, **overrides: object) -> CallStart:
    values: dict[str, object] = {
        "call_sid": sid(n),
        "started_at": T0 + timedelta(minutes=n),
        "from_number": "+15550001111",
        "to_number": "+15559990000",
        "persona": "concierge",
        "provider": "selfhosted",
    }
    values.update(overrides)
    return CallStart(**values)  # type: ignore[arg-type]


async def test_a_call_round_trips_with_utc_times(index: CallIndex, clock: FakeClock) -> None:
    paris = timezone(timedelta(hours=2))
    await index.start_call(start(1, started_at=datetime(2024, 5, 1, 14, 0, tzinfo=paris)))
    record = await index.get(sid(1))
    assert record is not None
    assert record.started_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert record.started_at.tzinfo is UTC
    assert record.status is CallStatus.PENDING
    assert (record.from_number, record.to_number, record.persona, record.provider) == (
        "+15550001111",
        "+15559990000",
        "concierge",
        "selfhosted",
    )
    assert record.ended_at is None
    assert record.updated_at == clock.now
    assert await index.get(sid(2)) is None


async def test_update_changes_only_the_fields_given(index: CallIndex, clock: FakeClock) -> None:
    await index.start_call(start(1, recording_path="r.wav", transcript_path="t.json"))
    clock.now = T0 + timedelta(seconds=5)
    ready = T0 + timedelta(seconds=3)
    await index.update(
        sid(1),
        CallUpdate(
            stream_sid="MZ1", status=CallStatus.LIVE, model_ready_at=ready, transcript_path=None
        ),
    )
    record = await index.get(sid(1))
    assert record is not None
    assert record.stream_sid == "MZ1"
    assert record.status is CallStatus.LIVE
    assert record.model_ready_at == ready
    assert record.recording_path == "r.wav"  # untouched
    assert record.transcript_path is None  # explicitly cleared
    assert record.updated_at == clock.now


async def test_finish_call_computes_the_duration(index: CallIndex) -> None:
    await index.start_call(start(0))
    ended = T0 + timedelta(seconds=93.5)
    await index.finish_call(
        sid(0),
        CallEnd(
            ended_at=ended,
            end_reason="caller_hangup",
            ended_by="caller",
            model_socket_seconds=91.25,
        ),
    )
    record = await index.get(sid(0))
    assert record is not None
    assert record.status is CallStatus.ENDED
    assert record.ended_at == ended
    assert record.duration_seconds == pytest.approx(93.5)
    assert record.model_socket_seconds == pytest.approx(91.25)
    assert (record.end_reason, record.ended_by, record.error) == ("caller_hangup", "caller", None)


async def test_unknown_and_duplicate_calls_are_storage_errors(index: CallIndex) -> None:
    with pytest.raises(StorageError, match="no call"):
        await index.update(sid(9), CallUpdate(status=CallStatus.LIVE))
    with pytest.raises(StorageError, match="no call"):
        await index.finish_call(sid(9), CallEnd(ended_at=T0, end_reason="x"))
    await index.start_call(start(1))
    with pytest.raises(StorageError, match="conflicting"):
        await index.start_call(start(1))


def test_naive_datetimes_are_refused_before_any_io() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        start(1, started_at=datetime(2024, 1, 1))  # naive on purpose
    with pytest.raises(ValueError, match="timezone-aware"):
        CallUpdate(model_ready_at=datetime(2024, 1, 1))  # naive on purpose
    with pytest.raises(ValueError, match="limit"):
        CallQuery(limit=0)
    with pytest.raises(ValueError, match="offset"):
        CallQuery(offset=-1)


async def test_list_filters_and_paginates_newest_first(index: CallIndex) -> None:
    for n in range(12):
        await index.start_call(
            start(
                n,
                from_number=f"+1555000{n:04d}",
                persona="sales" if n % 3 == 0 else "support",
            )
        )
        if n % 2 == 0:
            reason = "caller_hangup" if n % 4 == 0 else "model_closed"
            await index.finish_call(
                sid(n), CallEnd(ended_at=T0 + timedelta(hours=1), end_reason=reason)
            )

    page = await index.list_calls(CallQuery(limit=5))
    assert page.total == 12
    assert [r.call_sid for r in page.items] == [sid(n) for n in (11, 10, 9, 8, 7)]
    last = await index.list_calls(CallQuery(limit=5, offset=10))
    assert [r.call_sid for r in last.items] == [sid(1), sid(0)]

    async def sids(query: CallQuery) -> set[str]:
        result = await index.list_calls(query)
        assert result.total == len(result.items)
        return {r.call_sid for r in result.items}

    assert await sids(CallQuery(number="0007")) == {sid(7)}
    assert await sids(CallQuery(number="99900")) == {sid(n) for n in range(12)}  # To matches
    assert await sids(CallQuery(number="%")) == set()  # LIKE wildcards are escaped
    assert await sids(CallQuery(number="_")) == set()
    assert await sids(CallQuery(persona="sales")) == {sid(0), sid(3), sid(6), sid(9)}
    assert await sids(CallQuery(end_reason="caller_hangup")) == {sid(0), sid(4), sid(8)}
    assert await sids(CallQuery(status=CallStatus.PENDING)) == {sid(n) for n in range(1, 12, 2)}
    window = CallQuery(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=5))
    assert await sids(window) == {sid(3), sid(4)}
    both = CallQuery(persona="support", status=CallStatus.ENDED, since=T0 + timedelta(minutes=5))
    assert await sids(both) == {sid(8), sid(10)}


async def test_rows_survive_reopening(tmp_path: Path) -> None:
    url = default_database_url(tmp_path / "nested" / "data")
    async with await CallIndex.create(url) as first:
        await first.start_call(start(1))
    async with await CallIndex.create(url) as second:
        record = await second.get(sid(1))
    assert record is not None
    assert record.started_at == start(1).started_at


async def test_a_locked_database_raises_storage_error_and_recovers(tmp_path: Path) -> None:
    url = default_database_url(tmp_path)
    async with await CallIndex.create(url, busy_timeout=0.05) as idx:
        await idx.start_call(start(1))
        holder = sqlite3.connect(tmp_path / "calls.db", isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StorageError, match="locked") as caught:
                await idx.start_call(start(2))
            assert caught.value.__cause__ is not None
            with pytest.raises(StorageError, match="locked"):
                await idx.finish_call(sid(1), CallEnd(ended_at=T0, end_reason="x"))
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        await idx.start_call(start(2))  # the same index works again once the lock is gone
        assert (await idx.list_calls(CallQuery())).total == 2


@pytest.mark.parametrize(
    "url",
    [
        "not a database url",
        "nosuchdialect://host/db",
        "postgresql://user:s3cret-pw@127.0.0.1:1/calls",  # no asyncpg, or nothing listening
    ],
)
async def test_bad_urls_raise_storage_error_without_leaking_secrets(url: str) -> None:
    with pytest.raises(StorageError) as caught:
        await CallIndex.create(url)
    assert "s3cret-pw" not in str(caught.value)


async def test_an_unwritable_database_location_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError):
        await CallIndex.create(default_database_url(tmp_path / "file"))


def test_urls_get_async_drivers() -> None:
    assert normalize_database_url("postgres://u:p@h/db").drivername == "postgresql+asyncpg"
    assert normalize_database_url("postgresql://u:p@h/db").drivername == "postgresql+asyncpg"
    assert normalize_database_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert normalize_database_url("sqlite+aiosqlite:///x.db").database == "x.db"


def write_crashed_wav(path: Path, frames: int) -> None:
    """What a killed recorder leaves: audio on disk, header still saying 0 frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.full((frames, 2), 1000, dtype="<i2")
    path.write_bytes(wav_header(8000, 0) + audio.tobytes() + b"\x07")


async def test_interrupted_calls_are_marked_crashed_and_their_wavs_repaired(
    tmp_path: Path, index: CallIndex, clock: FakeClock
) -> None:
    live_wav = tmp_path / "recordings" / "live.wav"
    write_crashed_wav(live_wav, frames=8000 * 42)
    await index.start_call(start(1, status=CallStatus.LIVE, recording_path="recordings/live.wav"))
    await index.start_call(start(2))  # pending: the stream never came
    await index.start_call(start(3, status=CallStatus.LIVE, recording_path="recordings/gone.wav"))
    await index.start_call(start(4))
    await index.finish_call(sid(4), CallEnd(ended_at=T0 + timedelta(minutes=5), end_reason="done"))
    clock.now = T0 + timedelta(days=1)

    marked = await index.mark_interrupted_calls(clock.now, data_dir=tmp_path)

    assert sorted(marked) == [sid(1), sid(2), sid(3)]
    live = await index.get(sid(1))
    assert live is not None
    assert live.status is CallStatus.ENDED
    assert (live.end_reason, live.ended_by) == (CRASHED, "system")
    assert live.ended_at == live.started_at + timedelta(seconds=42)
    assert live.duration_seconds == pytest.approx(42)
    assert live.error is not None
    with wave.open(str(live_wav), "rb") as w:
        assert w.getnframes() == 8000 * 42
    pending = await index.get(sid(2))
    assert pending is not None
    assert pending.end_reason == CRASHED
    # no audio: the later of its start and its last row update (nothing later is known)
    assert pending.ended_at == pending.started_at
    gone = await index.get(sid(3))
    assert gone is not None
    assert gone.error is not None
    assert "no recording" in gone.error
    finished = await index.get(sid(4))
    assert finished is not None
    assert finished.end_reason == "done"
    assert await index.mark_interrupted_calls(clock.now, data_dir=tmp_path) == []


async def test_crash_recovery_never_touches_files_outside_the_data_dir(
    tmp_path: Path, index: CallIndex
) -> None:
    outside = tmp_path / "outside.wav"
    write_crashed_wav(outside, frames=80)
    before = outside.read_bytes()
    await index.start_call(start(1, status=CallStatus.LIVE, recording_path=str(outside)))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    assert await index.mark_interrupted_calls(T0 + timedelta(hours=1), data_dir=data_dir) == [
        sid(1)
    ]
    assert outside.read_bytes() == before
    record = await index.get(sid(1))
    assert record is not None
    assert record.error is not None
    assert "escapes" in record.error


async def replica_index(database_url: str, replica: str | None, clock: FakeClock) -> CallIndex:
    return await CallIndex.create(database_url, clock=clock, replica=replica)


async def test_rows_name_the_replica_and_sample_rate(database_url: str, clock: FakeClock) -> None:
    async with await replica_index(database_url, "bridge-1", clock) as one:
        await one.start_call(start(1))
        await one.start_call(start(2, sample_rate=16000))
        first, second = await one.get(sid(1)), await one.get(sid(2))
    assert first is not None
    assert second is not None
    assert (first.replica, first.sample_rate) == ("bridge-1", 8000)
    assert (second.replica, second.sample_rate) == ("bridge-1", 16000)


async def test_a_restarting_replica_marks_only_its_own_calls(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    indexes = {name: await replica_index(database_url, name, clock) for name in ("r0", "r1", None)}
    try:
        await indexes["r0"].start_call(start(1, status=CallStatus.LIVE))
        await indexes["r1"].start_call(start(2, status=CallStatus.LIVE))
        await indexes[None].start_call(start(3, status=CallStatus.LIVE))
        later = T0 + timedelta(hours=1)

        # r0 restarts: only its own row ends; r1's live call and the single-process row go on.
        assert await indexes["r0"].mark_interrupted_calls(later, data_dir=tmp_path) == [sid(1)]
        statuses = {n: (await indexes["r0"].get(sid(n))) for n in (1, 2, 3)}
        assert {n: r.status if r else None for n, r in statuses.items()} == {
            1: CallStatus.ENDED,
            2: CallStatus.LIVE,
            3: CallStatus.LIVE,
        }
        # a process without a replica id keeps today's behaviour for rows without one
        assert await indexes[None].mark_interrupted_calls(later, data_dir=tmp_path) == [sid(3)]
        untouched = await indexes[None].get(sid(2))
        assert untouched is not None
        assert untouched.status is CallStatus.LIVE
    finally:
        for idx in indexes.values():
            await idx.close()


async def test_survivors_mark_the_calls_of_replicas_that_are_gone(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    survivor = await replica_index(database_url, "r0", clock)
    dead = await replica_index(database_url, "r1", clock)
    single = await replica_index(database_url, None, clock)
    try:
        await survivor.start_call(start(1, status=CallStatus.LIVE))
        await dead.start_call(start(2, status=CallStatus.LIVE, recording_path="/elsewhere/x.wav"))
        await dead.start_call(start(3))  # pending
        await dead.start_call(start(4))
        await dead.finish_call(sid(4), CallEnd(ended_at=T0 + timedelta(minutes=9), end_reason="ok"))
        await single.start_call(start(5, status=CallStatus.LIVE))
        clock.now = T0 + timedelta(minutes=20)

        marked = await survivor.mark_crashed_replicas({"r0"}, clock.now, data_dir=tmp_path)

        assert sorted(marked) == [sid(2), sid(3)]
        crashed = await survivor.get(sid(2))
        assert crashed is not None
        assert (crashed.status, crashed.end_reason) == (CallStatus.ENDED, CRASHED)
        assert crashed.error is not None
        assert "replica r1 stopped" in crashed.error
        for n, status in ((1, CallStatus.LIVE), (4, CallStatus.ENDED), (5, CallStatus.LIVE)):
            record = await survivor.get(sid(n))
            assert record is not None
            assert record.status is status, n
        finished = await survivor.get(sid(4))
        assert finished is not None
        assert finished.end_reason == "ok"
        # nothing is left to mark; with every replica alive nothing is marked either
        assert await survivor.mark_crashed_replicas({"r0"}, clock.now) == []
        await survivor.start_call(start(6, status=CallStatus.LIVE))
        assert await survivor.mark_crashed_replicas({"r0", "r1"}, clock.now) == []
        # an empty alive set (every other replica gone) still spares rows without a replica
        assert await dead.mark_crashed_replicas(set(), clock.now) == [sid(1), sid(6)]
        spared = await survivor.get(sid(5))
        assert spared is not None
        assert spared.status is CallStatus.LIVE
    finally:
        for idx in (survivor, dead, single):
            await idx.close()


async def test_a_survivor_repairs_a_recording_it_can_reach(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    wav = tmp_path / "recordings" / "shared.wav"
    write_crashed_wav(wav, frames=8000 * 3)
    async with await replica_index(database_url, "r1", clock) as dead:
        await dead.start_call(start(1, status=CallStatus.LIVE, recording_path=str(wav)))
    async with await replica_index(database_url, "r0", clock) as survivor:
        assert await survivor.mark_crashed_replicas(
            {"r0"}, T0 + timedelta(hours=1), data_dir=tmp_path
        ) == [sid(1)]
        record = await survivor.get(sid(1))
    assert record is not None
    assert record.duration_seconds == pytest.approx(3)
    with wave.open(str(wav), "rb") as w:
        assert w.getnframes() == 8000 * 3


async def test_postgresql_down_is_a_storage_error_and_the_index_recovers(clock: FakeClock) -> None:
    server = PostgresServer()  # its own server: this test stops it
    try:
        server.start()
        index = await CallIndex.create(server.create_database(), clock=clock)
        try:
            await index.start_call(start(1))
            server.shutdown()
            with pytest.raises(StorageError):
                await index.start_call(start(2))
            with pytest.raises(StorageError):
                await index.get(sid(1))
            server.start()  # same cluster, same port: the rows are kept
            await index.start_call(start(2))
            assert (await index.list_calls(CallQuery())).total == 2
        finally:
            await index.close()
    finally:
        server.stop()
