"""The row spool (phonebridge/storage/row_spool.py): rows the index refused, kept on
disk and written when it is back, across restarts too.

A real SQLite index wrapped so that its writes fail while ``down`` is set, as
an unreachable database does (the cluster test does the same with a real
PostgreSQL stopped and restarted: tests/cluster/test_outages.py).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phonebridge.calls.journal import CallJournal
from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.errors import StorageError
from phonebridge.models.base import SessionTimings
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CRASHED, CallEnd, CallStart, CallStatus, CallUpdate
from phonebridge.storage.row_spool import RowSpool, RowWrite
from phonebridge.storage.transcript import TranscriptBuilder

SID = "CA" + "8" * 32
STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
ENDED = datetime(2025, 1, 2, 3, 5, 5, tzinfo=UTC)
START = CallStart(
    call_sid=SID,
    started_at=STARTED,
    from_number="+15005550006",
    to_number="+14165550102",
    persona="shakshuka",
    provider="personaplex",
    status=CallStatus.LIVE,
)
END = CallEnd(ended_at=ENDED, end_reason="caller_hangup", ended_by="caller")


class OutageIndex(CallIndex):
    """Every statement fails while ``down`` (like a stopped database server)."""

    down = False

    async def _run(self, operation: str, work: Any) -> Any:
        if self.down:
            self.up = False
            raise StorageError(f"call index: {operation} failed: connection refused")
        return await super()._run(operation, work)


@pytest.fixture
async def index(tmp_path: Path) -> Any:
    real = await CallIndex.create(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    wrapped = OutageIndex(real.engine)
    yield wrapped
    await wrapped.close()


async def wait_written(spool: RowSpool) -> None:
    async with asyncio.timeout(10):
        while spool.waiting:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_row_refused_during_an_outage_is_written_when_the_index_is_back(
    index: OutageIndex, tmp_path: Path
) -> None:
    spool = RowSpool(tmp_path / "rows", index)
    index.down = True
    write = RowWrite(SID, end=END, start=START, changes=CallUpdate(first_agent_audio_seconds=0.4))
    await spool.put(write)
    assert spool.waiting == 1
    assert (tmp_path / "rows" / f"{SID}.json").is_file()
    await asyncio.sleep(0.7)  # a pass or two fail while the index is down
    assert spool.waiting == 1
    index.down = False
    await wait_written(spool)
    record = await index.get(SID)
    assert record is not None
    assert (record.status, record.end_reason, record.persona) == (
        CallStatus.ENDED,
        "caller_hangup",
        "shakshuka",
    )
    assert record.first_agent_audio_seconds == 0.4
    assert record.duration_seconds == 60.0
    assert list((tmp_path / "rows").iterdir()) == []
    await spool.aclose()


async def test_spooled_rows_outlive_the_process_and_overwrite_a_crashed_guess(
    index: OutageIndex, tmp_path: Path
) -> None:
    await index.start_call(START)  # the start made it; the end did not
    index.down = True
    first = RowSpool(tmp_path / "rows", index)
    await first.put(RowWrite(SID, end=END, start=START))
    await first.aclose()  # the process stops while the database is still down
    index.down = False
    # Meanwhile a survivor marked the row crashed (its replica looked dead).
    await index.finish_call(SID, CallEnd(ended_at=ENDED, end_reason=CRASHED, ended_by="system"))

    again = RowSpool(tmp_path / "rows", index)  # the next start-up
    assert await again.resume() == 1
    await wait_written(again)
    record = await index.get(SID)
    assert record is not None
    assert record.end_reason == "caller_hangup"  # what really happened wins
    await again.aclose()


async def test_an_unreadable_spool_file_is_set_aside_not_retried(
    index: OutageIndex, tmp_path: Path
) -> None:
    rows = tmp_path / "rows"
    rows.mkdir()
    (rows / "CAbroken.json").write_text('{"call_sid": "CAbroken", "end": {"ended_at": ')
    spool = RowSpool(rows, index)
    assert await spool.resume() == 1
    await wait_written(spool)
    assert (rows / "CAbroken.bad").is_file()
    await spool.aclose()


def test_a_write_round_trips_through_json() -> None:
    write = RowWrite(SID, end=END, start=START, changes=CallUpdate(provider="polargrid"))
    back = RowWrite.from_json(json.loads(json.dumps(write.to_json())))
    assert back == write
    with pytest.raises(ValueError, match="unknown fields"):
        RowWrite.from_json({**write.to_json(), "end": {**write.to_json()["end"], "x": 1}})


async def test_a_journal_spools_its_final_row_when_the_index_is_down(
    index: OutageIndex, tmp_path: Path
) -> None:
    spool = RowSpool(tmp_path / "rows", index)
    index.down = True

    async def start_failed() -> bool:
        return False

    journal = CallJournal(
        call_sid=SID,
        index=index,
        recorder=None,
        transcript=TranscriptBuilder(SID),
        transcript_path=tmp_path / "t.json",
        wall_clock=lambda: ENDED,
        started_at=STARTED,
        start=START,
        row_started=asyncio.create_task(start_failed()),
        spool=spool,
    )
    outcome = CallOutcome(SID, "shakshuka", CallEndReason.CALLER_HANGUP, "stop")
    await journal.finish(outcome, SessionTimings(started=0.0, closed=3.0), 10.0)
    assert spool.waiting == 1
    index.down = False
    await wait_written(spool)
    record = await index.get(SID)
    assert record is not None
    assert (record.end_reason, record.transcript_path) == (
        "caller_hangup",
        str(tmp_path / "t.json"),
    )
    await spool.aclose()
