"""The call index: one row per call, in SQLite by default or PostgreSQL.

Built on SQLAlchemy 2.x Core with the asyncio extension; every statement is
built with the expression language (bound parameters, never strings glued
together). Drivers: ``aiosqlite`` for ``sqlite+aiosqlite:///DATA/calls.db``
(the default) and ``asyncpg`` for PostgreSQL, installed with the
``phonebridge[postgres]`` extra; ``postgres://`` and ``postgresql://`` URLs
from ``DATABASE_URL`` are pointed at asyncpg automatically.

Times are stored as naive UTC timestamps (portable across both databases) and
come back as aware UTC ``datetime`` objects; naive datetimes are refused on
the way in.

Failure policy: every operation raises :class:`StorageError` (with the driver
error as ``__cause__``) when the database is locked, unreachable or refuses
the statement. A call must never end because its record could not be
written: callers log the error with the call SID and carry on.

Crash recovery: a row left ``pending`` or ``live`` at start-up belongs to a
call the previous process never finished. :meth:`CallIndex.mark_interrupted_calls`
ends such rows with ``end_reason="crashed"`` and repairs their WAV header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Float,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from phonebridge.errors import StorageError
from phonebridge.storage.layout import INDEX_FILENAME, resolve_inside
from phonebridge.storage.models import (
    CRASHED,
    CallEnd,
    CallPage,
    CallQuery,
    CallRecord,
    CallStart,
    CallStatus,
    CallUpdate,
)
from phonebridge.storage.recording import repair_wav

__all__ = [
    "CallIndex",
    "default_database_url",
    "normalize_database_url",
]

T = TypeVar("T")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass timezone-aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("call_sid", String(64), primary_key=True),
    Column("stream_sid", String(64)),
    Column("from_number", String(64), nullable=False, default=""),
    Column("to_number", String(64), nullable=False, default=""),
    Column("persona", String(128), nullable=False, default="", index=True),
    Column("provider", String(64), nullable=False, default=""),
    Column("status", String(16), nullable=False, index=True),
    Column("started_at", UTCDateTime, nullable=False, index=True),
    Column("model_ready_at", UTCDateTime),
    Column("ended_at", UTCDateTime, index=True),
    Column("duration_seconds", Float),
    Column("end_reason", String(64), index=True),
    Column("ended_by", String(32)),
    Column("model_socket_seconds", Float),
    Column("recording_path", Text),
    Column("transcript_path", Text),
    Column("error", Text),
    # set by retention when the files were deleted and the paths nulled
    Column("files_expired_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)

_RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))


def default_database_url(data_dir: Path) -> str:
    """The SQLite index under the data directory."""
    return f"sqlite+aiosqlite:///{data_dir / INDEX_FILENAME}"


def normalize_database_url(url: str) -> URL:
    """Parse ``url``, picking async drivers: postgres[ql] -> asyncpg, sqlite -> aiosqlite."""
    if url.startswith("postgres://"):  # Heroku-style spelling SQLAlchemy does not accept
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError("call index: DATABASE_URL is not a database URL") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _record(row: Any) -> CallRecord:
    values = {name: row._mapping[name] for name in _RECORD_FIELDS}
    values["status"] = CallStatus(values["status"])
    return CallRecord(**values)


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the dashboard read while a call writes, and a reader never makes
    # a call's write wait.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


class CallIndex:
    """Async access to the ``calls`` table; create with :meth:`CallIndex.create`."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._engine = engine
        self._clock = clock  # stamps updated_at; injectable so tests control time

    @classmethod
    async def create(
        cls,
        engine_url: str,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> CallIndex:
        """Connect, create the table if needed, and return the index.

        ``busy_timeout`` is how long SQLite waits for a lock before the operation
        fails with :class:`StorageError`.
        """
        url = normalize_database_url(engine_url)
        shown = url.render_as_string(hide_password=True)
        options: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            options["connect_args"] = {"timeout": busy_timeout}
            if url.database in (None, "", ":memory:"):
                options["poolclass"] = StaticPool  # one shared in-memory database
            else:
                try:
                    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StorageError(f"call index: cannot create folder for {shown}") from exc
        try:
            engine = create_async_engine(url, **options)
        except ImportError as exc:
            raise StorageError(
                f"call index: no driver for {shown} (PostgreSQL needs phonebridge[postgres])"
            ) from exc
        except (ArgumentError, SQLAlchemyError) as exc:
            raise StorageError(f"call index: cannot use {shown}: {exc}") from exc
        if url.get_backend_name() == "sqlite" and options.get("poolclass") is None:
            event.listen(engine.sync_engine, "connect", _enable_sqlite_wal)
        index = cls(engine, clock=clock)
        try:
            await index._run("create tables", lambda conn: conn.run_sync(metadata.create_all))
        except StorageError:
            await engine.dispose()
            raise
        return index

    @property
    def engine(self) -> AsyncEngine:
        """For stores that share the index's database (the webhook outbox)."""
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> CallIndex:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, operation: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction; database trouble becomes StorageError."""
        try:
            async with self._engine.begin() as conn:
                return await work(conn)
        except StorageError:
            raise
        except IntegrityError as exc:
            raise StorageError(f"call index: {operation}: conflicting row: {exc.orig}") from exc
        except (SQLAlchemyError, OSError) as exc:
            cause = getattr(exc, "orig", None) or exc
            raise StorageError(f"call index: {operation} failed: {cause}") from exc

    # -- writes --------------------------------------------------------------

    async def start_call(self, start: CallStart) -> None:
        """Insert the row of a new call (a repeated SID raises StorageError)."""
        values = {f.name: getattr(start, f.name) for f in fields(start)}
        values["status"] = str(start.status)
        values["updated_at"] = self._clock()

        async def insert(conn: AsyncConnection) -> None:
            await conn.execute(calls.insert().values(**values))

        await self._run(f"start_call {start.call_sid}", insert)

    async def update(self, call_sid: str, changes: CallUpdate) -> None:
        """Change the fields set in ``changes`` (unset fields are left alone)."""
        values = changes.changed()
        if "status" in values:
            values["status"] = str(values["status"])
        values["updated_at"] = self._clock()

        async def apply(conn: AsyncConnection) -> None:
            result = await conn.execute(
                update(calls).where(calls.c.call_sid == call_sid).values(**values)
            )
            if result.rowcount == 0:
                raise StorageError(f"call index: no call {call_sid!r}")

        await self._run(f"update {call_sid}", apply)

    async def finish_call(self, call_sid: str, end: CallEnd) -> None:
        """Mark the call ended; the duration is computed from its start time."""

        async def finish(conn: AsyncConnection) -> None:
            started = await conn.scalar(
                select(calls.c.started_at).where(calls.c.call_sid == call_sid)
            )
            if started is None:
                raise StorageError(f"call index: no call {call_sid!r}")
            values: dict[str, Any] = {
                "status": str(CallStatus.ENDED),
                "ended_at": end.ended_at,
                "end_reason": end.end_reason,
                "ended_by": end.ended_by,
                "duration_seconds": max(0.0, (end.ended_at - started).total_seconds()),
                "updated_at": self._clock(),
            }
            if end.model_socket_seconds is not None:
                values["model_socket_seconds"] = end.model_socket_seconds
            if end.error is not None:
                values["error"] = end.error
            await conn.execute(update(calls).where(calls.c.call_sid == call_sid).values(**values))

        await self._run(f"finish_call {call_sid}", finish)

    # -- reads ---------------------------------------------------------------

    async def get(self, call_sid: str) -> CallRecord | None:
        async def fetch(conn: AsyncConnection) -> CallRecord | None:
            row = (await conn.execute(select(calls).where(calls.c.call_sid == call_sid))).first()
            return None if row is None else _record(row)

        return await self._run(f"get {call_sid}", fetch)

    async def list_calls(self, query: CallQuery) -> CallPage:
        """Newest first; ``total`` counts every match, not just this page."""
        conditions: list[Any] = []
        if query.number:
            conditions.append(
                or_(
                    calls.c.from_number.contains(query.number, autoescape=True),
                    calls.c.to_number.contains(query.number, autoescape=True),
                )
            )
        if query.persona is not None:
            conditions.append(calls.c.persona == query.persona)
        if query.since is not None:
            conditions.append(calls.c.started_at >= query.since)
        if query.until is not None:
            conditions.append(calls.c.started_at < query.until)
        if query.end_reason is not None:
            conditions.append(calls.c.end_reason == query.end_reason)
        if query.status is not None:
            conditions.append(calls.c.status == str(query.status))

        async def fetch(conn: AsyncConnection) -> CallPage:
            total = await conn.scalar(select(func.count()).select_from(calls).where(*conditions))
            rows = await conn.execute(
                select(calls)
                .where(*conditions)
                .order_by(calls.c.started_at.desc(), calls.c.call_sid.desc())
                .limit(query.limit)
                .offset(query.offset)
            )
            return CallPage(items=[_record(row) for row in rows], total=int(total or 0))

        return await self._run("list_calls", fetch)

    async def calls_with_files_ended_before(self, cutoff: datetime) -> list[CallRecord]:
        """Ended calls (before ``cutoff``) that still point at a recording or transcript."""

        async def fetch(conn: AsyncConnection) -> list[CallRecord]:
            rows = await conn.execute(
                select(calls)
                .where(
                    calls.c.ended_at < cutoff,
                    or_(calls.c.recording_path.is_not(None), calls.c.transcript_path.is_not(None)),
                )
                .order_by(calls.c.ended_at)
            )
            return [_record(row) for row in rows]

        return await self._run("calls_with_files_ended_before", fetch)

    # -- start-up recovery ---------------------------------------------------

    async def mark_interrupted_calls(
        self, now: datetime, *, data_dir: Path | None = None
    ) -> list[str]:
        """End every row still pending/live (its process died) as ``crashed``.

        The recording of each is repaired with :func:`repair_wav`; the end time
        is taken from the repaired recording's length when there is one (the
        last audio written), else from the row's last update. Relative paths
        are taken from ``data_dir``, and with a ``data_dir`` a path outside it
        is not touched. Returns the SIDs that were marked.
        """
        found = await self.list_calls(CallQuery(status=CallStatus.LIVE, limit=CallQuery.MAX_LIMIT))
        pending = await self.list_calls(
            CallQuery(status=CallStatus.PENDING, limit=CallQuery.MAX_LIMIT)
        )
        marked: list[str] = []
        for record in [*found.items, *pending.items]:
            recorded, note = await asyncio.to_thread(_repair_recording, record, data_dir)
            ended_at = max(record.updated_at, record.started_at)
            if recorded is not None:
                ended_at = max(ended_at, record.started_at + recorded)
            ended_at = min(ended_at, now)
            error = "; ".join(part for part in (record.error, note) if part) or None
            await self.finish_call(
                record.call_sid,
                CallEnd(ended_at=ended_at, end_reason=CRASHED, ended_by="system", error=error),
            )
            marked.append(record.call_sid)
        return marked


def _repair_recording(
    record: CallRecord, data_dir: Path | None
) -> tuple[timedelta | None, str | None]:
    """Repair a crashed call's WAV: (its audio length, a note for the error column)."""
    note = "the process ended before the call did"
    if not record.recording_path:
        return None, note
    try:
        path = (
            resolve_inside(data_dir, record.recording_path)
            if data_dir is not None
            else Path(record.recording_path)
        )
        info = repair_wav(path)
    except FileNotFoundError:
        return None, f"{note}; no recording on disk"
    except (OSError, StorageError) as exc:
        return None, f"{note}; recording not repaired: {exc}"
    if info is None:
        return None, f"{note}; recording is not a WAV file"
    return timedelta(seconds=info.duration_seconds), note
