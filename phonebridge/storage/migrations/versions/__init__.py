"""The revisions, oldest first by their number (Alembic reads their ids, not this package)."""
