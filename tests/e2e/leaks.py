"""Proof that a call left nothing behind: the check every fault test ends with.

Issue 8 asks, for each fault, that no model session, lease, task or file
handle leaks and that the process keeps serving. :func:`assert_no_leaks`
waits (bounded) for the bridge to settle, then checks each of those.

Descriptors on the call index's database file are counted apart. The tests
read the index from this same process (:func:`record_of` opens its own engine
on the file), and SQLite's unix VFS does not close a descriptor of a file on
which another connection of the process holds a lock (that would drop the
connection's POSIX locks): it parks it for reuse. The bridge's pool may also
open another connection when writes overlap. Both are bounded and neither is
a call's leak; every other descriptor must be given back exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from phonebridge.calls.bridge import Bridge
from phonebridge.local import LocalBridge

MAX_PARKED_DATABASE_FDS = 5  # SQLAlchemy's default pool size: a bound, not a target


def bridge_of(local: LocalBridge) -> Bridge:
    """The :class:`Bridge` object inside a running local bridge."""
    bridge: Bridge = local.app.state.deps.bridge
    return bridge


def _descriptors(local: LocalBridge) -> tuple[int, int]:
    """(descriptors on the database files, all others) this process holds."""
    database = str(local.settings.data_dir / "phonebridge.db")
    on_database = other = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue  # closed while we listed
        if target.startswith(database):
            on_database += 1
        else:
            other += 1
    return on_database, other


@dataclass(frozen=True, slots=True)
class Baseline:
    """What the process held before the calls under test."""

    tasks: int
    database_fds: int
    other_fds: int


def baseline(local: LocalBridge) -> Baseline:
    database_fds, other_fds = _descriptors(local)
    return Baseline(len(asyncio.all_tasks()), database_fds, other_fds)


async def assert_no_leaks(
    local: LocalBridge, before: Baseline | None = None, *, within: float = 10.0
) -> None:
    """Every call ended, every lease, model socket, task and descriptor given back.

    ``before`` (from :func:`baseline`, taken after the bridge started) makes the
    task and descriptor counts part of the check.
    """
    bridge = bridge_of(local)
    simulators = [*local.self_hosted, local.polargrid, local.fal]

    def leaks() -> list[str]:
        found = []
        if bridge.live or len(bridge.pending):
            found.append(f"calls: {len(bridge.live)} live, {len(bridge.pending)} pending")
        if bridge.admission.active_calls or bridge.admission.pool.in_use:
            found.append(f"leases: {bridge.admission.active_calls} held")
        open_models = [r for sim in simulators for r in sim.connections if r.closed_at is None]
        if open_models:
            found.append(f"model sockets open: {len(open_models)}")
        if before is not None:
            tasks = len(asyncio.all_tasks())
            if tasks > before.tasks:
                found.append(f"tasks: {before.tasks} -> {tasks}")
            database_fds, other_fds = _descriptors(local)
            if other_fds > before.other_fds:
                found.append(f"descriptors: {before.other_fds} -> {other_fds}")
            if database_fds - before.database_fds > MAX_PARKED_DATABASE_FDS:
                found.append(f"database descriptors: {before.database_fds} -> {database_fds}")
        return found

    # Teardown (and the kernel closing sockets) may still be under way: wait
    # until nothing is left, or report what still is.
    found = leaks()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while True:
                found = leaks()
                if not found:
                    break
                await asyncio.sleep(0.02)
    assert not found, found
