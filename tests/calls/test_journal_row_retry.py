"""The call journal's row policy when the index fails (phonebridge/calls/journal.py).

A real SQLite index wrapped so that its writes fail a set number of times,
as a locked or unreachable database does: the row must be inserted late if
its start failed, retried in the background, and its facts must be in the
transcript whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phonebridge.calls import journal as journal_module
from phonebridge.calls.journal import CallJournal
from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.errors import StorageError
from phonebridge.models.base import SessionTimings
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallStart, CallStatus
from phonebridge.storage.transcript import TranscriptBuilder

SID = "CA" + "7" * 32
STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
ENDED = datetime(2025, 1, 2, 3, 5, 5, tzinfo=UTC)


class FlakyIndex(CallIndex):
    """Writes fail ``failures`` times (like a locked database), then work."""

    failures = 0

    async def _run(self, operation: str, work: Any) -> Any:
        if not operation.startswith("get") and self.failures > 0:
            self.failures -= 1
            raise StorageError(f"call index: {operation} failed: database is locked")
        return await super()._run(operation, work)


@pytest.fixture
async def index(tmp_path: Path) -> Any:
    engine_index = await CallIndex.create(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    flaky = FlakyIndex(engine_index._engine)
    yield flaky
    await flaky.close()


def journal(index: CallIndex, tmp_path: Path, row_started: asyncio.Task[bool]) -> CallJournal:
    start = CallStart(
        call_sid=SID,
        started_at=STARTED,
        from_number="+15005550006",
        to_number="+14165550102",
        persona="shakshuka",
        provider="personaplex",
        status=CallStatus.LIVE,
    )
    return CallJournal(
        call_sid=SID,
        index=index,
        recorder=None,
        transcript=TranscriptBuilder(SID),
        transcript_path=tmp_path / "t.json",
        wall_clock=lambda: ENDED,
        started_at=STARTED,
        start=start,
        row_started=row_started,
    )


async def failed_start() -> bool:
    return False


async def finish(j: CallJournal) -> None:
    outcome = CallOutcome(SID, "shakshuka", CallEndReason.CALLER_HANGUP, "stop")
    await j.finish(outcome, SessionTimings(started=0.0, closed=3.0), 10.0)


async def test_a_row_whose_start_failed_is_inserted_at_the_end(
    index: FlakyIndex, tmp_path: Path
) -> None:
    await finish(journal(index, tmp_path, asyncio.create_task(failed_start())))
    record = await index.get(SID)
    assert record is not None
    assert (record.status, record.end_reason, record.persona) == (
        CallStatus.ENDED,
        "caller_hangup",
        "shakshuka",
    )
    assert record.duration_seconds == 60.0


async def test_final_row_is_retried_in_the_background(
    index: FlakyIndex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="phonebridge.calls.journal")
    monkeypatch.setattr(journal_module, "ROW_RETRY_DELAYS", (0.01, 0.01, 0.01))
    index.failures = 2  # the inline try and the first retry
    j = journal(index, tmp_path, asyncio.create_task(failed_start()))
    await finish(j)
    assert await index.get(SID) is None  # not yet: the retry runs after finish()
    async with asyncio.timeout(5):
        await asyncio.gather(*j._background)
    record = await index.get(SID)
    assert record is not None
    assert record.end_reason == "caller_hangup"
    assert any("completed on attempt 3" in r.getMessage() for r in caplog.records)


async def test_a_row_never_written_leaves_its_facts_in_the_transcript(
    index: FlakyIndex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(journal_module, "ROW_RETRY_DELAYS", (0.01,))
    index.failures = 100
    j = journal(index, tmp_path, asyncio.create_task(failed_start()))
    await finish(j)
    async with asyncio.timeout(5):
        await asyncio.gather(*j._background)
    assert await index.get(SID) is None
    lost = [r for r in caplog.records if "call row lost" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].levelno == logging.ERROR
    events = json.loads((tmp_path / "t.json").read_text())["events"]
    facts = json.loads(next(e["detail"] for e in events if e["kind"] == "call"))
    assert facts["to"] == "+14165550102"
    assert facts["end_reason"] == "caller_hangup"
    assert facts["started_at"] == STARTED.isoformat()
    assert facts["ended_at"] == ENDED.isoformat()
