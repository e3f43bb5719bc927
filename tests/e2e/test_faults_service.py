"""Service-side faults end to end: the data disk fills, the call index is locked (issue 8).

Defined outcomes (see phonebridge/calls/journal.py): the call goes on; what
could not be stored is logged once and noted on the call row; the row itself
is written once the database is back, and the transcript carries the call's
facts in any case.

How the disk fills, and why this way: the recorder's real ``write(2)`` calls
must fail the way they do on a full disk, without root (no loop or tmpfs
mounts) and without faking the file object. ``RLIMIT_FSIZE`` does exactly that
for this process: a write past the limit writes what fits and then fails with
``EFBIG`` (CPython ignores ``SIGXFSZ`` at start-up, so the process is not
killed). The limit applies to every file the process writes, so the call
index sits in memory for that test: the database on another disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import sqlite3
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport

from .conftest import BridgeFactory, record_of, tone_mulaw
from .leaks import Baseline, assert_no_leaks, baseline, bridge_of

SHAKSHUKA = "+14165550102"
IN_MEMORY_INDEX = "sqlite+aiosqlite:///:memory:"
WAV_BYTES_PER_SECOND = 8000 * 2 * 2  # 8 kHz, stereo, 16-bit


async def call(bridge: LocalBridge, seconds: float) -> DialReport:
    async with asyncio.timeout(30):
        return await dial(
            bridge.url,
            to=SHAKSHUKA,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            audio=tone_mulaw(seconds),
            tail=0.3,
        )


async def api_record(bridge: LocalBridge, call_sid: str) -> dict[str, Any]:
    """The call row through the API, once it is complete (works for any database)."""
    async with httpx.AsyncClient(base_url=bridge.url) as http, asyncio.timeout(10):
        while True:
            response = await http.get(f"/api/calls/{call_sid}")
            if response.status_code == 200 and response.json()["ended_at"] is not None:
                data: dict[str, Any] = response.json()
                return data
            await asyncio.sleep(0.05)


async def still_serving(bridge: LocalBridge, leaks: Baseline) -> None:
    await assert_no_leaks(bridge, leaks)
    report = await call(bridge, 0.6)
    assert report.ok, report.protocol_errors
    assert report.frames_received > 0
    assert (await api_record(bridge, report.call_sid))["end_reason"] == "caller_hangup"
    await assert_no_leaks(bridge, leaks)


def transcript_events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    return events


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Every file this process writes stops growing at ``limit`` bytes (EFBIG)."""
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN  # EFBIG, not death
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_disk_full_while_recording_the_call_goes_on(
    start_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 48_000  # the recording fails ~1.5 s into the call
    async with start_bridge(database_url=IN_MEMORY_INDEX) as bridge:
        leaks = baseline(bridge)
        with file_size_limit(limit):
            report = await call(bridge, 3.0)
        # The call went on to the caller's hang-up, and the caller heard the model
        # well past the moment the recording stopped.
        assert report.ended_by == "caller"
        assert report.agent_audio_seconds > 2.0
        record = await api_record(bridge, report.call_sid)
        assert (record["end_reason"], record["ended_by"]) == ("caller_hangup", "caller")
        assert "recording incomplete" in record["error"]
        assert "File too large" in record["error"]
        # Logged once, not once per frame.
        stopped = [r for r in caplog.records if "recording stopped" in r.getMessage()]
        assert len(stopped) == 1
        assert stopped[0].levelno == logging.ERROR
        # What was written is a playable WAV (its header fixed at the end).
        calls = list((bridge.settings.data_dir / "recordings").rglob(f"{report.call_sid}.wav"))
        assert len(calls) == 1
        assert calls[0].stat().st_size <= limit
        with wave.open(str(calls[0])) as wav:
            kept = wav.getnframes() / wav.getframerate()
        assert 1.0 < kept < limit / WAV_BYTES_PER_SECOND + 0.01
        # The transcript says when it happened.
        transcripts = bridge.settings.data_dir / "transcripts"
        events = transcript_events(next(transcripts.rglob(f"{report.call_sid}.json")))
        failed = [e for e in events if e["kind"] == "recording_failed"]
        assert len(failed) == 1
        assert 1.0 < failed[0]["at"] < 2.0
        await still_serving(bridge, leaks)


@contextlib.contextmanager
def database_locked(path: Path) -> Iterator[None]:
    """Another process's write transaction: every writer waits, then gives up."""
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


async def test_locked_database_the_call_goes_on_and_the_row_is_written_later(
    bridge: LocalBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """Locked longer than the index's busy timeout (5 s): the row's insert fails."""
    leaks = baseline(bridge)
    database = bridge.settings.data_dir / "phonebridge.db"
    loop = asyncio.get_running_loop()
    with database_locked(database):
        locked_at = loop.time()
        report = await call(bridge, 1.0)
        # The whole call happened while the database was locked: nothing waited for it.
        assert loop.time() - locked_at < 5.0
        assert report.ok, report.protocol_errors
        assert report.ended_by == "caller"
        assert report.agent_audio_seconds > 0.5
        # Hold the lock until the row's insert has given up.
        async with asyncio.timeout(15):
            while True:
                if any("call row not created" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
    # Once the database is back the row is written, with the call's real facts.
    record = await record_of(bridge, report.call_sid)
    assert (record.end_reason, record.ended_by) == ("caller_hangup", "caller")
    assert record.to_number == SHAKSHUKA
    assert record.persona == "shakshuka"
    assert record.model_ready_at is not None
    assert record.transcript_path is not None
    # And the transcript held those facts all along.
    facts = [e for e in transcript_events(Path(record.transcript_path)) if e["kind"] == "call"]
    assert len(facts) == 1
    assert json.loads(facts[0]["detail"])["end_reason"] == "caller_hangup"
    await still_serving(bridge, leaks)


async def test_persona_file_broken_during_a_call_the_call_and_the_number_go_on(
    bridge: LocalBridge, personas_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """test_call_path covers the reload's rejection; this is a call already running."""
    leaks = baseline(bridge)
    ongoing = asyncio.create_task(call(bridge, 2.0))
    async with asyncio.timeout(10):
        while True:
            if bridge_of(bridge).live:
                break
            await asyncio.sleep(0.02)
    (personas_dir / "shakshuka.yaml").write_text("name: [unclosed\n")
    os.kill(os.getpid(), signal.SIGHUP)
    report = await ongoing
    assert report.ok, report.protocol_errors
    assert report.ended_by == "caller"
    record = await record_of(bridge, report.call_sid)
    assert (record.end_reason, record.persona) == ("caller_hangup", "shakshuka")
    assert any(
        r.levelno >= logging.WARNING and "shakshuka" in r.getMessage() for r in caplog.records
    )
    # The number still reaches the last good persona.
    again = await call(bridge, 0.5)
    assert again.custom_parameters["persona"] == "shakshuka"
    assert again.frames_received > 0
    await still_serving(bridge, leaks)
