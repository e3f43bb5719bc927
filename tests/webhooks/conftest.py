"""Outbox tests run on SQLite and on a real PostgreSQL (``database_url`` is either)."""

from __future__ import annotations

from ..storage.conftest import database_url, postgres_server, postgres_url

__all__ = ["database_url", "postgres_server", "postgres_url"]
