"""The call index: one row per call, in SQLite by default or PostgreSQL.

Built on SQLAlchemy 2.x Core with the asyncio extension; every statement is
built with the expression language (bound parameters, never strings glued
together). Drivers: ``aiosqlite`` for ``sqlite+aiosqlite:///DATA/calls.db``
(the default) and ``asyncpg`` for PostgreSQL (both core dependencies; a
cluster of replicas shares one PostgreSQL); ``postgres://`` and
``postgresql://`` URLs from ``DATABASE_URL`` are pointed at asyncpg
automatically. The schema is made and upgraded by Alembic migrations
(:mod:`phonebridge.storage.migrate`) when the index is created.

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
In a cluster each row names its ``replica``: a restarting replica marks only
its own rows, and a survivor marks the rows of replicas that are no longer
alive (:meth:`CallIndex.mark_crashed_replicas`). Rows without a replica (one
process, or ``serve --workers`` on one host) are marked by a process without
a replica id, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence, Set
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from phonebridge.errors import StorageError
from phonebridge.storage import migrate as migrations
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
    OutboxEntry,
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
    # time to first audible agent audio (issue 13, the operator overview)
    Column("recording_path", Text),
    Column("transcript_path", Text),
    Column("error", Text),
    # set by retention when the files were deleted and the paths nulled
    Column("files_expired_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    # -- revision 0002: the replica that holds the call (NULL: one process) and its audio rate
    Column("replica", String(64), index=True),
    Column("sample_rate", Integer, nullable=False, default=8000, server_default=text("8000")),
    # -- revision 0003: when the recording and transcript reached the object store
    Column("files_stored_at", UTCDateTime),
    # -- revision 0004: which kind of leg carried the call, and who placed a browser call
    Column("channel", String(32), nullable=False, default="", server_default=text("''")),
    Column("placed_by", String(128)),
    # -- revision 0005: when the agent's voice first reached the caller (the overview's figure)
    Column("first_agent_audio_seconds", Float),
    # -- revision 0007: a hand-off to a human (issue 17): to whom, how, when, how it went
    Column("transfer_to", String(128)),
    Column("transfer_mode", String(8)),
    Column("transfer_at", UTCDateTime),
    Column("transfer_result", String(16)),
)
"""The schema the code expects: the head of the migrations (each change is a
revision in ``migrations/versions``; tests compare the two)."""

# -- revision 0006: outbound calls and campaigns (read and written by
# phonebridge/outbound/store.py; docs/outbound.md). In the index's database so
# a restart or a replica crash resumes a campaign from the shared rows.

outbound_attempts = Table(
    "outbound_attempts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("call_sid", String(64), unique=True),
    Column("campaign_id", String(40), index=True),
    Column("contact_id", Integer, index=True),
    Column("attempt", Integer, nullable=False, default=1),
    Column("to_number", String(32), nullable=False),
    Column("from_number", String(32), nullable=False),
    Column("persona", String(128), nullable=False),
    Column("placed_by", String(160), nullable=False),
    Column("variables", Text, nullable=False, default="{}"),
    # claimed (before the REST request) -> dialing (the carrier took it) ->
    # answered -> ended; or claimed -> ended (outcome not_placed)
    Column("state", String(16), nullable=False, index=True),
    Column("outcome", String(32)),
    Column("answered_by", String(32)),
    Column("error", Text),
    Column("replica", String(64), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    # revision 0009: the carrier that dials it (NULL: written before 0009)
    Column("carrier", String(32)),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("persona", String(128), nullable=False),
    Column("from_number", String(32), nullable=False),
    Column("created_by", String(160), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("concurrency", Integer, nullable=False),
    Column("daily_cap", Integer),
    Column("max_attempts", Integer, nullable=False),
    Column("retry_seconds", Float, nullable=False),
    Column("window_start", String(5), nullable=False),
    Column("window_end", String(5), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

campaign_contacts = Table(
    "campaign_contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(40), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("number", String(32), nullable=False),
    Column("variables", Text, nullable=False, default="{}"),
    Column("time_zone", String(64)),
    # queued -> dialing -> queued (a retry) | done | skipped (DNC, no window) | cancelled
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("outcome", String(32)),
    Column("updated_at", UTCDateTime, nullable=False),
)

dnc_numbers = Table(
    "dnc_numbers",
    metadata,
    Column("number", String(32), primary_key=True),
    Column("source", String(32), nullable=False),
    Column("note", Text),
    Column("added_at", UTCDateTime, nullable=False),
)

# -- revision 0008: the post-call webhook's outbox (issue 15; queries in webhooks/outbox.py)
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    # The idempotency key the receiver sees: one per delivery, the same on every attempt.
    Column("id", String(64), primary_key=True),
    Column("call_sid", String(64), nullable=False, index=True),
    Column("event", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    # Times are Unix seconds (floats): the worker compares them with its clock only.
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    # A delivering process owns the row until then (replicas never send one row twice
    # at once; a crashed owner's claim simply runs out).
    Column("claimed_until", Float),
    Column("delivered_at", Float),
    Column("last_status", Integer),
    Column("last_error", Text),
    Index("ix_webhook_outbox_due", "state", "next_attempt_at"),
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


def outbox_values(entry: OutboxEntry) -> dict[str, Any]:
    """An outbox entry as a ``webhook_outbox`` row."""
    values = {f.name: getattr(entry, f.name) for f in fields(entry)}
    values["state"] = str(entry.state)
    return values


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

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], datetime] = _utc_now,
        replica: str | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock  # stamps updated_at; injectable so tests control time
        self.replica = replica
        """The replica id stamped on every new row (None: a single process)."""
        self.migration: migrations.MigrationResult | None = None
        """What the start-up migration did (set by :meth:`create`)."""
        self.up = True
        """False since a statement failed because the database could not be reached
        (until one succeeds): ``/readyz`` and ``phonebridge_call_index_up`` show it."""
        self.last_error: str | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The database engine, for query modules on the same database (storage/stats.py,
        the webhook outbox)."""
        return self._engine

    @classmethod
    async def create(
        cls,
        engine_url: str,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], datetime] = _utc_now,
        replica: str | None = None,
        migrate: bool = True,
    ) -> CallIndex:
        """Connect, migrate the schema to the newest revision, and return the index.

        ``busy_timeout`` is how long SQLite waits for a lock before the operation
        fails with :class:`StorageError`. ``replica`` is this replica's id,
        stamped on the rows it creates (None for a single process).
        ``migrate=False`` connects without touching the schema (``phonebridge db``).
        """
        url = normalize_database_url(engine_url)
        shown = url.render_as_string(hide_password=True)
        options: dict[str, Any] = {}
        if url.get_backend_name() != "sqlite":
            # A pooled connection to a PostgreSQL that restarted is dead: test it
            # before use, so the first statement after a restart succeeds.
            options["pool_pre_ping"] = True
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
        index = cls(engine, clock=clock, replica=replica)
        if not migrate:
            return index
        try:
            index.migration = await index.run_sync("migrate schema", migrations.upgrade)
        except StorageError:
            await engine.dispose()
            raise
        return index

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> CallIndex:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run_sync(self, operation: str, work: Callable[[Connection], T]) -> T:
        """Run synchronous ``work`` (Alembic, reflection) in one transaction."""
        return await self._run(operation, lambda conn: conn.run_sync(work))

    async def _run(self, operation: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction; database trouble becomes StorageError."""
        try:
            async with self._engine.begin() as conn:
                result = await work(conn)
        except StorageError:
            raise
        except (CommandError, RevisionError) as exc:
            raise StorageError(f"call index: {operation} failed: {exc}") from exc
        except IntegrityError as exc:
            raise StorageError(f"call index: {operation}: conflicting row: {exc.orig}") from exc
        except (SQLAlchemyError, OSError) as exc:
            cause = getattr(exc, "orig", None) or exc
            self.up = False
            self.last_error = str(cause).splitlines()[0][:200] if str(cause) else repr(cause)
            raise StorageError(f"call index: {operation} failed: {cause}") from exc
        self.up = True
        return result

    # -- writes --------------------------------------------------------------

    async def start_call(self, start: CallStart) -> None:
        """Insert the row of a new call (a repeated SID raises StorageError)."""
        values = {f.name: getattr(start, f.name) for f in fields(start)}
        values["status"] = str(start.status)
        values["updated_at"] = self._clock()
        values["replica"] = self.replica

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

    async def finish_call(
        self, call_sid: str, end: CallEnd, *, outbox: Sequence[OutboxEntry] = ()
    ) -> None:
        """Mark the call ended; the duration is computed from its start time.

        ``outbox``: deliveries of the call's summary (the post-call webhook),
        queued in the same transaction, so a final row never lacks its
        summary and a failed write queues none.
        """

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
            if outbox:
                await conn.execute(webhook_outbox.insert(), [outbox_values(e) for e in outbox])

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
        """This replica's ended calls (before ``cutoff``) that still point at a file.

        Only this replica's rows (see :meth:`mark_interrupted_calls`): their
        spool files are on this replica's disk, where retention can delete them.
        """

        async def fetch(conn: AsyncConnection) -> list[CallRecord]:
            rows = await conn.execute(
                select(calls)
                .where(
                    self._mine(),
                    calls.c.ended_at < cutoff,
                    or_(calls.c.recording_path.is_not(None), calls.c.transcript_path.is_not(None)),
                )
                .order_by(calls.c.ended_at)
            )
            return [_record(row) for row in rows]

        return await self._run("calls_with_files_ended_before", fetch)

    # -- crash recovery --------------------------------------------------------

    def _mine(self) -> Any:
        """Rows of this replica (rows with no replica, when this index has none)."""
        if self.replica is None:
            return calls.c.replica.is_(None)
        return calls.c.replica == self.replica

    async def _unfinished(self, condition: Any) -> list[CallRecord]:
        async def fetch(conn: AsyncConnection) -> list[CallRecord]:
            rows = await conn.execute(
                select(calls)
                .where(calls.c.status.in_([str(CallStatus.LIVE), str(CallStatus.PENDING)]))
                .where(condition)
                .order_by(calls.c.started_at)
            )
            return [_record(row) for row in rows]

        return await self._run("unfinished calls", fetch)

    async def mark_interrupted_calls(
        self, now: datetime, *, data_dir: Path | None = None
    ) -> list[str]:
        """End this replica's rows still pending/live (its process died) as ``crashed``.

        Run at start-up, before this replica takes calls. Only rows of this
        replica are touched (rows without a replica when this index has none),
        so a restarting replica never ends a call another replica is running.

        The recording of each is repaired with :func:`repair_wav`; the end time
        is taken from the repaired recording's length when there is one (the
        last audio written), else from the row's last update. Relative paths
        are taken from ``data_dir``, and with a ``data_dir`` a path outside it
        is not touched. Returns the SIDs that were marked.
        """
        mine = (
            calls.c.replica.is_(None) if self.replica is None else calls.c.replica == self.replica
        )
        marked: list[str] = []
        for record in await self._unfinished(mine):
            recorded, note = await asyncio.to_thread(_repair_recording, record, data_dir)
            await self._mark_crashed(record, now, recorded, note)
            marked.append(record.call_sid)
        return marked

    async def mark_crashed_replicas(
        self, alive: Set[str], now: datetime, *, data_dir: Path | None = None
    ) -> list[str]:
        """End the pending/live rows of every replica not in ``alive`` as ``crashed``.

        Run by a survivor once the coordination layer says which replicas are
        alive. Rows without a replica are never touched here (a single process
        marks its own at start-up). A recording the survivor can reach (inside
        ``data_dir``) is repaired; one on the dead replica's own disk is
        repaired and uploaded when that replica starts again (its leftovers).
        Returns the SIDs that were marked.
        """
        conditions: list[Any] = [calls.c.replica.is_not(None)]
        if alive:
            conditions.append(calls.c.replica.not_in(sorted(alive)))
        marked: list[str] = []
        for record in await self._unfinished(and_(*conditions)):
            recorded: timedelta | None = None
            note: str | None = f"replica {record.replica} stopped before the call ended"
            if data_dir is not None and _reachable(record.recording_path, data_dir):
                recorded, note = await asyncio.to_thread(_repair_recording, record, data_dir)
            await self._mark_crashed(record, now, recorded, note)
            marked.append(record.call_sid)
        return marked

    async def _mark_crashed(
        self, record: CallRecord, now: datetime, recorded: timedelta | None, note: str | None
    ) -> None:
        ended_at = max(record.updated_at, record.started_at)
        if recorded is not None:
            ended_at = max(ended_at, record.started_at + recorded)
        ended_at = min(ended_at, now)
        error = "; ".join(part for part in (record.error, note) if part) or None
        await self.finish_call(
            record.call_sid,
            CallEnd(ended_at=ended_at, end_reason=CRASHED, ended_by="system", error=error),
        )

    # -- the object store ------------------------------------------------------

    async def calls_with_files_to_store(
        self, *, ended_since: datetime | None = None, limit: int = 100
    ) -> list[CallRecord]:
        """This replica's ended calls whose files are not in the object store yet.

        Oldest end first. ``ended_since`` narrows the search to recent ends (the
        cheap query run after every call, on the ``ended_at`` index); without
        it every leftover is found (start-up, and the periodic retry).
        """
        mine = (
            calls.c.replica.is_(None) if self.replica is None else calls.c.replica == self.replica
        )
        conditions = [
            mine,
            calls.c.status == str(CallStatus.ENDED),
            calls.c.files_stored_at.is_(None),
            calls.c.files_expired_at.is_(None),
            or_(calls.c.recording_path.is_not(None), calls.c.transcript_path.is_not(None)),
        ]
        if ended_since is not None:
            conditions.append(calls.c.ended_at >= ended_since)

        async def fetch(conn: AsyncConnection) -> list[CallRecord]:
            rows = await conn.execute(
                select(calls).where(*conditions).order_by(calls.c.ended_at).limit(limit)
            )
            return [_record(row) for row in rows]

        return await self._run("calls_with_files_to_store", fetch)


def _reachable(stored: str | None, data_dir: Path) -> bool:
    if not stored:
        return False
    try:
        return resolve_inside(data_dir, stored).is_file()
    except (OSError, StorageError):
        return False


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
