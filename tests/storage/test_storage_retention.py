"""Retention deletes old files, keeps rows, and never deletes outside the data directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_paths
from phonebridge.storage.models import CallEnd, CallStart
from phonebridge.storage.retention import apply_retention

NOW = datetime(2024, 6, 30, tzinfo=UTC)


def sid(n: int) -> str:
    return f"CA{n:032x}"


@pytest.fixture
async def index(database_url: str) -> AsyncIterator[CallIndex]:
    idx = await CallIndex.create(database_url)  # SQLite and PostgreSQL (conftest.py)
    try:
        yield idx
    finally:
        await idx.close()


async def add_call(
    index: CallIndex, data_dir: Path, n: int, ended_days_ago: float | None
) -> tuple[Path, Path]:
    started = NOW - timedelta(days=(ended_days_ago or 0) + 0.01)
    paths = call_paths(data_dir, sid(n), started)
    relative_transcript = paths.transcript.relative_to(paths.recording.parents[4])
    for path in (paths.recording, paths.transcript):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"data")
    await index.start_call(
        CallStart(
            call_sid=sid(n),
            started_at=started,
            recording_path=str(paths.recording),
            transcript_path=str(relative_transcript),  # relative paths work too
        )
    )
    if ended_days_ago is not None:
        ended = NOW - timedelta(days=ended_days_ago)
        await index.finish_call(sid(n), CallEnd(ended_at=ended, end_reason="done"))
    return paths.recording, paths.transcript


async def test_old_files_go_rows_stay(tmp_path: Path, index: CallIndex) -> None:
    data = tmp_path / "data"
    old = await add_call(index, data, 1, ended_days_ago=31)
    recent = await add_call(index, data, 2, ended_days_ago=29)
    live = await add_call(index, data, 3, ended_days_ago=None)

    report = await apply_retention(index, data, days=30, now=NOW)

    assert report.expired_calls == [sid(1)]
    assert sorted(report.deleted_files) == sorted(p.resolve() for p in old)
    assert report.refused == []
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in (*recent, *live))
    record = await index.get(sid(1))
    assert record is not None
    assert (record.recording_path, record.transcript_path) == (None, None)
    assert record.files_expired_at == NOW
    assert record.end_reason == "done"  # the rest of the row is kept
    # a second pass has nothing left to do
    again = await apply_retention(index, data, days=30, now=NOW)
    assert again.expired_calls == []


async def test_files_already_gone_still_expire_the_row(tmp_path: Path, index: CallIndex) -> None:
    data = tmp_path / "data"
    recording, transcript = await add_call(index, data, 1, ended_days_ago=100)
    recording.unlink()
    report = await apply_retention(index, data, days=30, now=NOW)
    assert report.expired_calls == [sid(1)]
    assert report.deleted_files == [transcript.resolve()]


async def test_paths_outside_the_data_dir_are_refused(tmp_path: Path, index: CallIndex) -> None:
    data = tmp_path / "data"
    outside = tmp_path / "precious.wav"
    outside.write_bytes(b"keep me")
    await index.start_call(
        CallStart(
            call_sid=sid(1),
            started_at=NOW - timedelta(days=90),
            recording_path=str(outside),
            transcript_path="../precious.wav",
        )
    )
    await index.finish_call(sid(1), CallEnd(ended_at=NOW - timedelta(days=90), end_reason="x"))
    # and a symlink inside the data dir that points out of it
    linked_recording, _ = await add_call(index, data, 2, ended_days_ago=90)
    linked_recording.unlink()
    os.symlink(outside, linked_recording)

    report = await apply_retention(index, data, days=30, now=NOW)

    assert outside.read_bytes() == b"keep me"
    assert sorted(sid_ for sid_, _ in report.refused) == [sid(1), sid(2)]
    assert all("escapes" in why for _, why in report.refused)
    assert report.expired_calls == []
    record = await index.get(sid(2))
    assert record is not None
    assert record.recording_path is not None  # left for an operator to look at


async def test_retention_refuses_zero_days(tmp_path: Path, index: CallIndex) -> None:
    with pytest.raises(ValueError, match="at least one day"):
        await apply_retention(index, tmp_path, days=0, now=NOW)
