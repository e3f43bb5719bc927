"""Alembic migrations of the call index; run them with :mod:`phonebridge.storage.migrate`.

One revision per schema change, in ``versions/`` (``NNNN_what.py``, revision
id ``NNNN``), each following expand/contract (see ``migrate.py``).
"""
