"""Schema migrations of the call index: Alembic, run at start-up and by ``phonebridge db``.

The revisions live in ``migrations/versions`` inside the package (shipped as
package data, so an installed wheel can migrate). :meth:`CallIndex.create`
upgrades to the newest revision this code knows before the index is used;
``phonebridge db upgrade|downgrade|current`` does the same by hand.

**Databases from before migrations.** A database made by the older
``create_all`` has the ``calls`` table but no ``alembic_version``: it is
stamped with the baseline (``0001``, identical to that table) and then
upgraded, its rows kept.

**Several replicas start at once.** On PostgreSQL the migration runs under a
transaction-scoped advisory lock, so one replica migrates and the others wait,
then find nothing to do. (SQLite serves one host: ``serve --workers``
migrates in its supervisor before any worker starts.)

**Rolling upgrades: expand, then contract.** Replicas are upgraded one by
one, so for a while old and new code share one schema. Hence:

1. *Expand* revisions only add: nullable columns, or columns with a server
   default; new tables; new indexes. Old code names its columns explicitly, so
   it neither reads nor writes what it does not know, and its INSERTs still
   satisfy the new columns. The first new replica to start applies them.
2. New code must work on rows written by old code (NULL in the new columns).
3. *Contract* (dropping or renaming a column, tightening NOT NULL) ships in a
   later release, after no replica runs code that uses the old shape.

A replica whose code is older than the database (a rollback, or an old pod
still starting during a rollout) finds a revision it does not know: it does
not touch the schema and carries on, which expand-only revisions make safe;
it logs a warning. ``phonebridge db downgrade`` is the deliberate way back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"
"""The revision equal to the schema ``create_all`` made before migrations."""

ADVISORY_LOCK_KEY = 0x7068_6F6E_6562  # "phoneb": one key for every phonebridge replica


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What :func:`upgrade` found and did."""

    before: str | None
    after: str | None
    adopted: bool = False
    """The database predates migrations and was stamped with the baseline."""
    newer: bool = False
    """The database is at a revision this code does not know (left alone)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for our revisions, bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None  # there is always a baseline
    return revision


def known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def current(connection: Connection) -> str | None:
    """The database's revision; None when it has none (new, or made before migrations)."""
    return MigrationContext.configure(connection).get_current_revision()


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Released when the transaction ends (commit or rollback).
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})


def upgrade(connection: Connection, target: str = "head") -> MigrationResult:
    """Bring the database to ``target`` (run inside a transaction: ``engine.begin()``)."""
    _lock(connection)
    before = current(connection)
    if before is not None and before not in known_revisions():
        log.warning(
            "call index: the database is at revision %s, newer than this code knows (%s); "
            "leaving the schema alone (expand-only revisions keep older code working)",
            before,
            head(),
        )
        return MigrationResult(before=before, after=before, newer=True)
    config = alembic_config(connection)
    adopted = False
    if before is None:
        tables = set(inspect(connection).get_table_names())
        if "calls" in tables:
            command.stamp(config, BASELINE)
            adopted = True
            log.info("call index: a database from before migrations; stamped %s", BASELINE)
    command.upgrade(config, target)
    after = current(connection)
    if after != before:
        log.info("call index: schema %s -> %s", before or "empty", after)
    return MigrationResult(before=before, after=after, adopted=adopted)


def downgrade(connection: Connection, target: str) -> MigrationResult:
    """Take the database back to ``target`` (a revision id, ``-1``, or ``base``)."""
    _lock(connection)
    before = current(connection)
    command.downgrade(alembic_config(connection), target)
    return MigrationResult(before=before, after=current(connection))


__all__ = [
    "BASELINE",
    "MIGRATIONS_DIR",
    "MigrationResult",
    "alembic_config",
    "current",
    "downgrade",
    "head",
    "known_revisions",
    "upgrade",
]
