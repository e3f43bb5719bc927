"""The call index runs on SQLite and on a real PostgreSQL: ``database_url`` is either.

Tests that take ``database_url`` run twice, once per database, so both are
held to the same behaviour (tests/realservers/postgres_server.py starts the
PostgreSQL, one per session, a fresh database per test).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from phonebridge.storage.index import default_database_url

from ..realservers.postgres_server import PostgresServer, postgres_server, postgres_url

__all__ = ["PostgresServer", "database_url", "postgres_server", "postgres_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty call-index database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        (tmp_path / "db").mkdir()
        return default_database_url(tmp_path / "db")
    url: str = request.getfixturevalue("postgres_url")
    return url
