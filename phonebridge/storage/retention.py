"""Retention: delete old recordings and transcripts, keep the call rows.

A call whose ``ended_at`` is more than ``days`` before ``now`` loses its files;
its row stays (the history, durations and billing seconds are kept) with both
paths set to NULL and ``files_expired_at`` set, so the dashboard can say
"expired" instead of "missing".

Safety: a path is deleted only if it resolves (symlinks followed) to a file
inside ``data_dir``. A row pointing elsewhere is reported in
:attr:`RetentionReport.refused` and left as it is for an operator to look at.

In a cluster each replica expires its own calls (their spool files are on its
disk). With an object store the call's objects are deleted too (their keys come from
the row's SID and start time, never from a stored path). If the store cannot
be reached the row is refused for this pass and keeps its paths, so the next
pass tries again; nothing is forgotten half-deleted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_keys, resolve_inside
from phonebridge.storage.models import CallRecord, CallUpdate
from phonebridge.storage.objects import ObjectStore


@dataclass(slots=True)
class RetentionReport:
    """What one retention pass did."""

    expired_calls: list[str] = field(default_factory=list)  # rows whose files are gone now
    deleted_files: list[Path] = field(default_factory=list)
    deleted_objects: list[str] = field(default_factory=list)  # object-store keys
    refused: list[tuple[str, str]] = field(default_factory=list)  # (call_sid, why)


async def apply_retention(
    index: CallIndex,
    data_dir: Path,
    days: int,
    now: datetime,
    *,
    store: ObjectStore | None = None,
) -> RetentionReport:
    """Delete the files of calls that ended more than ``days`` days before ``now``.

    Raises ``ValueError`` for ``days < 1`` (0 would delete the call that just
    ended) and :class:`StorageError` if the index cannot be read or updated.
    """
    if days < 1:
        raise ValueError("retention must keep at least one day")
    report = RetentionReport()
    for record in await index.calls_with_files_ended_before(now - timedelta(days=days)):
        try:
            deleted = await asyncio.to_thread(_delete_files, record, data_dir)
        except StorageError as exc:
            report.refused.append((record.call_sid, str(exc)))
            continue
        except OSError as exc:
            report.refused.append((record.call_sid, f"cannot delete: {exc}"))
            continue
        if store is not None:
            keys = call_keys(record.call_sid, record.started_at)
            try:
                for key in (keys.recording, keys.transcript):
                    await store.delete(key)
                    report.deleted_objects.append(key)
            except StorageError as exc:
                report.refused.append((record.call_sid, str(exc)))
                continue
        report.deleted_files.extend(deleted)
        await index.update(
            record.call_sid,
            CallUpdate(recording_path=None, transcript_path=None, files_expired_at=now),
        )
        report.expired_calls.append(record.call_sid)
    return report


def _delete_files(record: CallRecord, data_dir: Path) -> list[Path]:
    # Resolve every path first, so one row's refused path deletes nothing of it.
    targets = [
        resolve_inside(data_dir, stored)
        for stored in (record.recording_path, record.transcript_path)
        if stored
    ]
    deleted: list[Path] = []
    for target in targets:
        if target.is_file():
            target.unlink()
            deleted.append(target)
    return deleted
