"""Call rows the index could not take, kept on disk and written when it is back.

A call must never wait for its paperwork, and a PostgreSQL outage (a restart,
a failover, a network cut) can outlast any short retry. So a call row that
failed to write is *spooled*: one small JSON file per call under
``DATA/rows/``, written atomically (temporary file, fsync, rename), and one
task per process writes the spooled rows to the index, oldest first, until it
takes them, waiting a little longer after each failed pass (up to
:data:`MAX_WAIT_SECONDS`). A written row's file is deleted. The spool is on
the replica's own disk, so a row survives the process too: at start-up
(:meth:`RowSpool.resume`) the leftovers are written first.

What a spooled write does, in order: insert the row if it is missing (its
start never made it), apply the changes, end it. Ending a row that a
survivor already marked ``crashed`` (this replica died, or its heartbeat
lapsed while the database was down) overwrites that guess with what really
happened.

A file that cannot be read back (truncated by a disk error, edited by hand)
is renamed ``*.bad`` and logged, never retried for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import (
    UNSET,
    CallEnd,
    CallStart,
    CallStatus,
    CallUpdate,
    DeliveryState,
    OutboxEntry,
)

log = logging.getLogger(__name__)

SPOOL_DIRNAME = "rows"
FIRST_WAIT_SECONDS = 0.5
MAX_WAIT_SECONDS = 5.0
"""The longest pause between passes while the index refuses rows: a database
that is back is noticed within seconds, and a pass costs one query per row."""


@dataclass(frozen=True, slots=True)
class RowWrite:
    """Everything one call's row still needs: its start (if it may be missing), changes, end."""

    call_sid: str
    end: CallEnd
    start: CallStart | None = None
    changes: CallUpdate | None = None
    outbox: tuple[OutboxEntry, ...] = ()
    """The call's summary deliveries: queued with the end, in its transaction."""

    async def apply(self, index: CallIndex) -> None:
        if self.start is not None and await index.get(self.call_sid) is None:
            await index.start_call(self.start)
        if self.changes is not None and self.changes.changed():
            await index.update(self.call_sid, self.changes)
        await index.finish_call(self.call_sid, self.end, outbox=self.outbox)

    # -- JSON -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid,
            "end": _encode(self.end),
            "start": None if self.start is None else _encode(self.start),
            "changes": None if self.changes is None else _encode(self.changes),
            "outbox": [asdict(entry) for entry in self.outbox],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowWrite:
        """Raises KeyError, TypeError or ValueError on anything but what :meth:`to_json` wrote."""
        start = data["start"]
        changes = data["changes"]
        return cls(
            call_sid=str(data["call_sid"]),
            end=CallEnd(**_decode(CallEnd, data["end"])),
            start=None if start is None else CallStart(**_decode(CallStart, start)),
            changes=None if changes is None else CallUpdate(**_decode(CallUpdate, changes)),
            outbox=tuple(
                OutboxEntry(**{**entry, "state": DeliveryState(entry["state"])})
                for entry in data.get("outbox", [])
            ),
        )


_DATETIME_FIELDS = {
    "started_at",
    "ended_at",
    "model_ready_at",
    "files_expired_at",
    "files_stored_at",
    "transfer_at",
}


def _encode(record: CallStart | CallUpdate | CallEnd) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if value is UNSET:
            continue  # a CallUpdate field left alone stays left alone
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, CallStatus):
            value = value.value
        out[f.name] = value
    return out


def _decode(kind: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, raw in data.items():
        if name in _DATETIME_FIELDS and raw is not None:
            values[name] = datetime.fromisoformat(raw)
        elif name == "status":
            values[name] = CallStatus(raw)
        else:
            values[name] = raw
    return values


class RowSpool:
    """The rows of this process waiting for the call index (``DATA/rows/<sid>.json``)."""

    def __init__(self, directory: Path, index: CallIndex) -> None:
        self.directory = directory
        self._index = index
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.waiting = 0
        """Rows on disk not yet written (the ``phonebridge_call_rows_waiting`` gauge)."""

    def _path(self, call_sid: str) -> Path:
        if not call_sid or "/" in call_sid or call_sid.startswith("."):
            raise StorageError(f"row spool: unusable call SID {call_sid[:40]!r}")
        return self.directory / f"{call_sid}.json"

    async def put(self, write: RowWrite) -> None:
        """Keep ``write`` on disk (durably) and have it written when the index takes it.

        Raises :class:`StorageError` if even the disk refuses (the caller logs;
        the transcript still holds the call's facts).
        """
        await asyncio.to_thread(self._store, write)
        self._recount()
        self._ensure_running()

    def _store(self, write: RowWrite) -> None:
        path = self._path(write.call_sid)
        temporary = path.with_suffix(".tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with temporary.open("w", encoding="utf-8") as handle:
                json.dump(write.to_json(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(path)
        except OSError as exc:
            raise StorageError(f"row spool: cannot keep {write.call_sid}'s row: {exc}") from exc

    def _recount(self) -> None:
        with contextlib.suppress(OSError):
            self.waiting = sum(1 for _ in self.directory.glob("*.json"))

    async def resume(self) -> int:
        """At start-up: count the rows a previous process left and start writing them."""
        await asyncio.to_thread(self._recount)
        if self.waiting:
            log.warning("%d call row(s) left in %s; writing them", self.waiting, self.directory)
            self._ensure_running()
        return self.waiting

    def _ensure_running(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="row-spool")

    async def flush(self) -> int:
        """One pass: write every spooled row the index takes; returns how many remain."""
        paths = await asyncio.to_thread(self._oldest_first)
        remaining = 0
        for path in paths:
            write = await asyncio.to_thread(self._load, path)
            if write is None:
                continue
            try:
                await write.apply(self._index)
            except StorageError as exc:
                remaining += 1
                log.debug("spooled row of %s not written yet: %s", write.call_sid, exc)
                continue
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)
            log.info("spooled call row written", extra={"call_sid": write.call_sid})
        await asyncio.to_thread(self._recount)
        return remaining

    def _oldest_first(self) -> list[Path]:
        try:
            paths = list(self.directory.glob("*.json"))
            return sorted(paths, key=lambda p: p.stat().st_mtime)
        except OSError:
            return []

    def _load(self, path: Path) -> RowWrite | None:
        try:
            return RowWrite.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("spooled call row %s unreadable (%s); set aside as .bad", path.name, exc)
            with contextlib.suppress(OSError):
                path.replace(path.with_suffix(".bad"))
            return None

    async def _run(self) -> None:
        wait = FIRST_WAIT_SECONDS
        while True:
            self._wake.clear()
            if await self.flush() == 0:
                return
            log.warning("%d call row(s) wait for the call index", self.waiting)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            wait = min(wait * 2, MAX_WAIT_SECONDS)

    async def aclose(self) -> None:
        """Shutdown: stop retrying; what is still spooled is written at the next start."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["MAX_WAIT_SECONDS", "SPOOL_DIRNAME", "RowSpool", "RowWrite"]
