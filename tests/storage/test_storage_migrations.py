"""Schema migrations (Alembic) on SQLite and a real PostgreSQL.

The old schema is made the way phonebridge made it before migrations: with
``create_all`` on the table as it was then (``TODAY``, frozen below), rows
inserted, then upgraded: the rows must come through intact.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Float,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.ext.asyncio import create_async_engine

from phonebridge.errors import StorageError
from phonebridge.storage import db_cli, migrate
from phonebridge.storage.index import CallIndex, metadata, normalize_database_url
from phonebridge.storage.models import CallEnd, CallQuery, CallStart, CallStatus

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# The calls table exactly as phonebridge declared it before migrations (a frozen copy).
today = MetaData()
TODAY = Table(
    "calls",
    today,
    Column("call_sid", String(64), primary_key=True),
    Column("stream_sid", String(64)),
    Column("from_number", String(64), nullable=False, default=""),
    Column("to_number", String(64), nullable=False, default=""),
    Column("persona", String(128), nullable=False, default="", index=True),
    Column("provider", String(64), nullable=False, default=""),
    Column("status", String(16), nullable=False, index=True),
    Column("started_at", DateTime, nullable=False, index=True),
    Column("model_ready_at", DateTime),
    Column("ended_at", DateTime, index=True),
    Column("duration_seconds", Float),
    Column("end_reason", String(64), index=True),
    Column("ended_by", String(32)),
    Column("model_socket_seconds", Float),
    Column("recording_path", Text),
    Column("transcript_path", Text),
    Column("error", Text),
    Column("files_expired_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
)


def sid(n: int) -> str:
    return f"CA{n:032x}"


def old_row(n: int, *, ended: bool) -> dict[str, Any]:
    naive = T0.replace(tzinfo=None) + timedelta(minutes=n)
    return {
        "call_sid": sid(n),
        "stream_sid": f"MZ{n}",
        "from_number": "+15550001111",
        "to_number": "+15559990000",
        "persona": "concierge",
        "provider": "personaplex",
        "status": "ended" if ended else "live",
        "started_at": naive,
        "ended_at": naive + timedelta(seconds=30) if ended else None,
        "duration_seconds": 30.0 if ended else None,
        "end_reason": "caller_hangup" if ended else None,
        "recording_path": f"/data/recordings/{n}.wav",
        "transcript_path": f"/data/transcripts/{n}.json",
        "updated_at": naive,
    }


async def on_connection(url: str, work: Any) -> Any:
    engine = create_async_engine(normalize_database_url(url))
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def schema(conn: Connection) -> dict[str, Any]:
    """Every table's columns (type, nullable, server default), indexes, primary and
    unique keys, as the database says (Alembic's own table left out)."""
    inspector = inspect(conn)
    tables: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        columns = {
            c["name"]: (str(c["type"]), c["nullable"], c.get("default"))
            for c in inspector.get_columns(table)
        }
        indexes = {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes(table)}
        unique = sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table))
        tables[table] = {
            "columns": columns,
            "indexes": indexes,
            "pk": inspector.get_pk_constraint(table),
            "unique": unique,
        }
    return tables


def make_old_database(conn: Connection, rows: list[dict[str, Any]]) -> None:
    today.create_all(conn)
    conn.execute(TODAY.insert(), rows)


async def test_the_baseline_is_the_schema_from_before_migrations(
    database_url: str, postgres_server: Any, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    other = (
        f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
        if database_url.startswith("sqlite")
        else postgres_server.create_database()
    )
    await on_connection(database_url, today.create_all)
    await on_connection(other, lambda conn: migrate.upgrade(conn, migrate.BASELINE))
    assert await on_connection(other, schema) == await on_connection(database_url, schema)


async def test_the_head_is_the_schema_the_code_declares(
    database_url: str, postgres_server: Any, tmp_path: Any
) -> None:
    other = (
        f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
        if database_url.startswith("sqlite")
        else postgres_server.create_database()
    )
    await on_connection(database_url, metadata.create_all)
    await (await CallIndex.create(other)).close()
    head = await on_connection(other, schema)
    assert set(head) == set(metadata.tables)  # calls, the outbound tables (0006), the outbox (0008)
    assert head == await on_connection(database_url, schema)


async def test_a_database_from_before_migrations_is_adopted_with_its_rows(
    database_url: str,
) -> None:
    rows = [old_row(1, ended=True), old_row(2, ended=False)]
    await on_connection(database_url, lambda conn: make_old_database(conn, rows))
    assert await on_connection(database_url, migrate.current) is None

    index = await CallIndex.create(database_url, replica="r0")
    try:
        assert index.migration is not None
        assert index.migration.adopted
        assert (index.migration.before, index.migration.after) == (None, migrate.head())
        page = await index.list_calls(CallQuery())
        assert [r.call_sid for r in page.items] == [sid(2), sid(1)]
        ended = await index.get(sid(1))
        assert ended is not None
        assert ended.started_at == T0 + timedelta(minutes=1)
        assert (ended.end_reason, ended.duration_seconds) == ("caller_hangup", 30.0)
        assert ended.recording_path == "/data/recordings/1.wav"
        # rows from before have no replica and the rate the old code recorded at
        assert (ended.replica, ended.sample_rate, ended.files_stored_at) == (None, 8000, None)
        # old rows still work with the new code: a new row, and the old live row finished
        await index.start_call(CallStart(call_sid=sid(3), started_at=T0, sample_rate=16000))
        await index.finish_call(sid(2), CallEnd(ended_at=T0 + timedelta(hours=1), end_reason="x"))
        finished = await index.get(sid(2))
        assert finished is not None
        assert finished.status is CallStatus.ENDED
    finally:
        await index.close()
    # a second start finds nothing to do
    again = await CallIndex.create(database_url)
    try:
        assert again.migration is not None
        assert not again.migration.adopted
        assert again.migration.before == again.migration.after == migrate.head()
        assert (await again.list_calls(CallQuery())).total == 3
    finally:
        await again.close()


async def test_downgrade_keeps_rows_and_old_code_can_write_again(database_url: str) -> None:
    async with await CallIndex.create(database_url, replica="r1") as index:
        await index.start_call(CallStart(call_sid=sid(1), started_at=T0))

    def down_then_old_insert(conn: Connection) -> list[Any]:
        migrate.downgrade(conn, migrate.BASELINE)
        names = {c["name"] for c in inspect(conn).get_columns("calls")}
        assert {"replica", "sample_rate", "files_stored_at"}.isdisjoint(names)
        conn.execute(TODAY.insert(), [old_row(2, ended=True)])
        return list(conn.execute(select(TODAY.c.call_sid).order_by(TODAY.c.call_sid)))

    rows = await on_connection(database_url, down_then_old_insert)
    assert [r[0] for r in rows] == [sid(1), sid(2)]
    assert await on_connection(database_url, migrate.current) == migrate.BASELINE
    async with await CallIndex.create(database_url) as index:  # and up again
        assert (await index.list_calls(CallQuery())).total == 2
        first = await index.get(sid(1))
        assert first is not None
        assert first.replica is None  # the column was dropped with its values
    await on_connection(database_url, lambda conn: migrate.downgrade(conn, "base"))
    assert {"calls", "webhook_outbox"}.isdisjoint(
        await on_connection(database_url, lambda conn: inspect(conn).get_table_names())
    )


async def test_older_code_leaves_a_newer_schema_alone(database_url: str) -> None:
    async with await CallIndex.create(database_url) as index:
        await index.start_call(CallStart(call_sid=sid(1), started_at=T0))
    # a later release migrated the database to a revision this code has never heard of
    await on_connection(
        database_url,
        lambda conn: conn.execute(text("UPDATE alembic_version SET version_num='9999'")),
    )
    async with await CallIndex.create(database_url) as index:
        assert index.migration is not None
        assert index.migration.newer
        assert await index.get(sid(1)) is not None
    assert await on_connection(database_url, migrate.current) == "9999"


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    indexes = await asyncio.gather(*(CallIndex.create(postgres_url) for _ in range(4)))
    try:
        results = [idx.migration for idx in indexes]
        assert all(r is not None and r.after == migrate.head() for r in results)
        assert sum(1 for r in results if r is not None and r.before is None) == 1
    finally:
        for idx in indexes:
            await idx.close()


def cli(command: str, revision: str | None = None) -> tuple[int, str]:
    out = io.StringIO()
    args = argparse.Namespace(db_command=command, revision=revision)
    return db_cli.run(args, out), out.getvalue().strip()


def test_the_db_command(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    head = migrate.head()
    assert cli("current") == (0, f"none (this code's head: {head})")
    assert cli("upgrade", "0002") == (0, "empty -> 0002")
    assert cli("upgrade", "head") == (0, f"0002 -> {head}")
    assert cli("downgrade", "-1")[0] == 0
    assert not cli("current")[1].startswith(f"{head} ")  # one step below the head
    assert cli("downgrade", "0002")[0] == 0
    assert cli("current")[1].startswith("0002 ")
    assert cli("downgrade", "base") == (0, "0002 -> base")


def test_the_db_command_reports_a_database_it_cannot_reach(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:s3cret@127.0.0.1:1/db")
    assert cli("current")[0] == 1
    assert cli("upgrade")[0] == 1
    err = capsys.readouterr().err
    assert "phonebridge db:" in err
    assert "s3cret" not in err


async def test_a_bad_revision_is_a_storage_error(database_url: str) -> None:
    async with await CallIndex.create(database_url) as index:
        with pytest.raises(StorageError, match="migrate"):
            await index.run_sync("migrate", lambda conn: migrate.upgrade(conn, "nosuchrev"))
