"""``phonebridge db upgrade | downgrade | current``: the call index's schema by hand.

``phonebridge serve`` upgrades the schema itself at start-up; these commands
are for operators who migrate before a rollout (a Kubernetes Job, a deploy
step), check where a database stands, or step back before rolling back code.
The database is ``DATABASE_URL`` (else the SQLite file under
``PHONEBRIDGE_DATA``); no other setting is needed. Exit 0 on success, 1 when
the database refuses, 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TextIO, TypeVar

from sqlalchemy import Connection

from phonebridge import config
from phonebridge.errors import StorageError
from phonebridge.storage import migrate
from phonebridge.storage.index import CallIndex

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``db upgrade|downgrade|current`` to the main CLI's subcommands."""
    db = subparsers.add_parser("db", help="migrate the call index's schema (Alembic)")
    actions = db.add_subparsers(dest="db_command", required=True)
    up = actions.add_parser("upgrade", help="upgrade the schema (what serve does at start-up)")
    up.add_argument("revision", nargs="?", default="head", help="target revision (head)")
    down = actions.add_parser(
        "downgrade", help="step the schema back (before running older code that needs it)"
    )
    down.add_argument("revision", help="target revision: an id such as 0002, -1, or base")
    actions.add_parser("current", help="print the database's revision and this code's head")
    db.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    url = config.database_url_from_env()
    try:
        return asyncio.run(_run(args.db_command, getattr(args, "revision", None), url, out))
    except StorageError as exc:
        print(f"phonebridge db: {exc}", file=sys.stderr)
        return 1


async def _run(command: str, revision: str | None, url: str, out: TextIO) -> int:
    # migrate=False: `db downgrade` must not upgrade first, `current` must not change anything.
    index = await CallIndex.create(url, migrate=False)
    try:

        async def sync(work: Callable[[Connection], T]) -> T:
            return await index.run_sync(f"db {command}", work)

        if command == "upgrade":
            result = await sync(lambda conn: migrate.upgrade(conn, revision or "head"))
            if result.newer:
                print(f"the database is at {result.before}, newer than this code", file=out)
                return 1
            print(f"{result.before or 'empty'} -> {result.after}", file=out)
        elif command == "downgrade":
            assert revision is not None
            result = await sync(lambda conn: migrate.downgrade(conn, revision))
            print(f"{result.before or 'empty'} -> {result.after or 'base'}", file=out)
        else:
            found = await sync(migrate.current)
            print(f"{found or 'none'} (this code's head: {migrate.head()})", file=out)
    finally:
        await index.close()
    return 0


__all__ = ["register", "run"]
