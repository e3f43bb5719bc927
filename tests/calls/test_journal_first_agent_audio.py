"""Time to first agent audio, as the journal records it (phonebridge/calls/journal.py).

The first *audible* agent audio, where it sits on the caller's line: PersonaPlex
sends pages of silence from the start, which the caller cannot tell from
nothing. The figure goes to the call row (first_agent_audio_seconds) and to the
transcript's closing ``call`` event, next to how long the model took to open.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from phonebridge.calls.journal import CallJournal
from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.models.base import SessionTimings
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallStart, CallStatus
from phonebridge.storage.transcript import TranscriptBuilder

SID = "CA" + "5" * 32
STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
ENDED = datetime(2025, 1, 2, 3, 4, 15, tzinfo=UTC)
PAGE = 640  # 80 ms at 8 kHz


def pcm(level: float, samples: int = PAGE) -> bytes:
    t = np.arange(samples) / 8000
    return (np.sin(2 * np.pi * 300 * t) * level * 32767).astype("<i2").tobytes()


async def finish(journal: CallJournal) -> None:
    timings = SessionTimings(started=10.0, connected=10.2, ready=11.5, closed=20.0)
    outcome = CallOutcome(SID, "shakshuka", CallEndReason.CALLER_HANGUP, "stop")
    await journal.finish(outcome, timings, 20.0)


def new_journal(tmp_path: Path, index: CallIndex | None) -> CallJournal:
    return CallJournal(
        call_sid=SID,
        index=index,
        recorder=None,
        transcript=TranscriptBuilder(SID),
        transcript_path=tmp_path / "t.json",
        wall_clock=lambda: ENDED,
        started_at=STARTED,
    )


async def test_silent_pages_do_not_count_the_first_voiced_one_does(tmp_path: Path) -> None:
    async with await CallIndex.create(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}") as index:
        await index.start_call(CallStart(SID, STARTED, status=CallStatus.LIVE, stream_sid="MZ1"))
        journal = new_journal(tmp_path, index)
        journal.agent_audio(bytes(PAGE * 2), 0)  # digital silence
        journal.agent_audio(pcm(0.002), PAGE)  # line noise, about -57 dBFS
        journal.agent_audio(pcm(0.3), 4 * PAGE)  # the greeting, 320 ms in
        journal.agent_audio(pcm(0.3), 5 * PAGE)
        await finish(journal)
        record = await index.get(SID)
    assert record is not None
    assert record.first_agent_audio_seconds == 4 * PAGE / 8000
    facts = json.loads(json.loads((tmp_path / "t.json").read_text())["events"][-1]["detail"])
    assert facts["first_agent_audio_seconds"] == 0.32
    assert facts["model_open_seconds"] == 1.5  # ready - started


async def test_an_agent_that_never_spoke_has_no_time(tmp_path: Path) -> None:
    journal = new_journal(tmp_path, None)
    for page in range(10):
        journal.agent_audio(bytes(PAGE * 2), page * PAGE)
    await finish(journal)
    facts = json.loads(json.loads((tmp_path / "t.json").read_text())["events"][-1]["detail"])
    assert facts["first_agent_audio_seconds"] is None
