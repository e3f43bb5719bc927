"""Copy finished calls' recordings and transcripts to the object store.

The local file is the crash-safe spool: the recorder writes it as the call
runs (a killed process leaves a WAV that ``repair_wav`` fixes), and only a
finished file is uploaded. This module runs one loop per replica:

- **at start-up**, every leftover of this replica: ended or crashed calls
  whose files are not in the store yet (``files_stored_at`` is NULL);
- **after each call**, a cheap look at recent ends (on the ``ended_at``
  index) every :attr:`Archiver.interval` seconds, so a call is uploaded a
  moment after it ends. The row's ``ended_at`` is the signal: nothing in
  ``calls/`` knows there is an object store;
- **periodically**, the full leftover query again, which retries what failed.

When the store is down, the files stay in the spool and the call row stays as
it is (the call itself never waits on the store); the next passes retry with
a growing pause (:data:`RETRY_DELAYS`) and log once per outage. A call's
``files_stored_at`` is set only when every file it has on disk is stored.

A crashed call's WAV is repaired before its upload: a survivor may have
marked the row without reaching the file (it was on this replica's disk).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_keys, resolve_inside
from phonebridge.storage.models import CRASHED, CallRecord, CallUpdate
from phonebridge.storage.objects import ObjectStore
from phonebridge.storage.recording import repair_wav

log = logging.getLogger(__name__)

RETRY_DELAYS: tuple[float, ...] = (2.0, 5.0, 15.0, 30.0, 60.0)
"""Pauses after consecutive failed passes (the last one repeats)."""

WAV = "audio/wav"
JSON = "application/json"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ArchiveReport:
    """What one pass did."""

    stored: list[str] = field(default_factory=list)  # calls whose files are all in the store
    failed: list[tuple[str, str]] = field(default_factory=list)  # (call_sid, why)
    missing: list[tuple[str, str]] = field(default_factory=list)  # files not on this disk


class Archiver:
    """Uploads this replica's finished calls' files (see the module docstring)."""

    def __init__(
        self,
        index: CallIndex,
        store: ObjectStore,
        data_dir: Path,
        *,
        clock: Callable[[], datetime] = _utc_now,
        interval: float = 2.0,
        recent: timedelta = timedelta(minutes=10),
        full_scan_every: float = 300.0,
        settle: timedelta = timedelta(0),
        batch: int = 100,
    ) -> None:
        self._index = index
        self._store = store
        self._data_dir = data_dir
        self._clock = clock
        self.interval = interval
        self._recent = recent
        self._full_scan_every = full_scan_every
        self._settle = settle  # e.g. post-call transcription still rewriting the transcript
        self._batch = batch

    async def store_leftovers(self) -> ArchiveReport:
        """Every call of this replica with files not in the store yet."""
        return await self._pass(ended_since=None)

    async def store_recent(self) -> ArchiveReport:
        """Calls that ended in the last few minutes (the after-each-call pass)."""
        return await self._pass(ended_since=self._clock() - self._recent)

    async def _pass(self, *, ended_since: datetime | None) -> ArchiveReport:
        report = ArchiveReport()
        ripe_before = self._clock() - self._settle
        seen: set[str] = set()
        while True:
            records = await self._index.calls_with_files_to_store(
                ended_since=ended_since, limit=self._batch
            )
            todo = [
                r
                for r in records
                if r.call_sid not in seen and r.ended_at is not None and r.ended_at <= ripe_before
            ]
            if not todo:
                return report
            for record in todo:
                seen.add(record.call_sid)
                await self._store_call(record, report)
            if len(records) < self._batch:
                return report

    async def _store_call(self, record: CallRecord, report: ArchiveReport) -> None:
        keys = call_keys(record.call_sid, record.started_at)
        uploads = (
            (record.recording_path, keys.recording, WAV),
            (record.transcript_path, keys.transcript, JSON),
        )
        for stored, key, content_type in uploads:
            if not stored:
                continue
            try:
                path = resolve_inside(self._data_dir, stored)
            except StorageError as exc:
                report.missing.append((record.call_sid, str(exc)))
                continue
            if not path.is_file():
                report.missing.append((record.call_sid, f"{key}: not on this replica's disk"))
                continue
            if content_type == WAV and record.end_reason == CRASHED:
                try:
                    await asyncio.to_thread(repair_wav, path)
                except (OSError, StorageError) as exc:
                    log.warning(
                        "crashed call's WAV not repaired before upload: %s",
                        exc,
                        extra={"call_sid": record.call_sid},
                    )
            try:
                await self._store.put_file(key, path, content_type)
            except StorageError as exc:
                report.failed.append((record.call_sid, str(exc)))
                return  # the row stays unstored: the whole call is retried later
        try:
            await self._index.update(record.call_sid, CallUpdate(files_stored_at=self._clock()))
        except StorageError as exc:
            # uploaded but not noted: the next pass uploads it again (same content)
            report.failed.append((record.call_sid, str(exc)))
            return
        report.stored.append(record.call_sid)

    async def run_forever(self) -> None:
        """Leftovers first, then the after-each-call pass and the periodic full pass."""
        loop = asyncio.get_running_loop()
        failures = 0
        next_full = loop.time()  # the first pass is a full one: leftovers of a crash
        while True:
            full = loop.time() >= next_full
            try:
                report = await (self.store_leftovers() if full else self.store_recent())
            except StorageError as exc:  # the call index itself is down
                report = ArchiveReport(failed=[("*", str(exc))])
            if full:
                next_full = loop.time() + self._full_scan_every
            if report.stored:
                log.info("object store: stored the files of %d call(s)", len(report.stored))
            for call_sid, why in report.missing:
                log.warning("object store: %s", why, extra={"call_sid": call_sid})
            if report.failed:
                if failures == 0:
                    sid, why = report.failed[0]
                    log.error(
                        "object store: %d call(s) not stored, retrying (%s)",
                        len(report.failed),
                        why,
                        extra={"call_sid": sid},
                    )
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                next_full = min(next_full, loop.time() + delay)  # retry the failed ones in full
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("object store: reachable again after %d failed pass(es)", failures)
            failures = 0
            await asyncio.sleep(self.interval)


__all__ = ["RETRY_DELAYS", "ArchiveReport", "Archiver"]
