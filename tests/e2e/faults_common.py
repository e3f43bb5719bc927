"""Shared by the fault tests: the leak check, allowing for SQLite's descriptor reuse.

The tests read the call index from this same process (:func:`record_of` opens
its own engine on the bridge's database file). SQLite's unix VFS does not
close a descriptor of a file on which another connection of the process
holds a lock (closing it would drop that connection's POSIX locks): it parks
it for reuse by the next open of that file. So descriptors on the database
file can outlive a test's reads, and the bridge's pool may keep a second
connection after two writes overlapped. Both are bounded, and neither is a
call's leak; every other descriptor must be given back.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from phonebridge.local import LocalBridge

from .leaks import Baseline, assert_no_leaks, baseline

MAX_PARKED_DATABASE_FDS = 5  # SQLAlchemy's default pool size: a bound, not a target


def database_fds(local: LocalBridge) -> int:
    """Descriptors this process holds on the bridge's database files."""
    prefix = str(local.settings.data_dir / "phonebridge.db")
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            count += str(fd.readlink()).startswith(prefix)
    return count


class LeakBaseline:
    """:func:`baseline` plus the database descriptors held at the same moment."""

    def __init__(self, local: LocalBridge) -> None:
        self.local = local
        self.before = baseline()
        self.database_fds = database_fds(local)

    async def assert_no_leaks(self) -> None:
        parked = max(0, database_fds(self.local) - self.database_fds)
        assert parked <= MAX_PARKED_DATABASE_FDS, f"{parked} descriptors on the database"
        before = Baseline(self.before.tasks, self.before.fds + parked)
        await assert_no_leaks(self.local, before)
