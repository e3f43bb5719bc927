"""Proof that a call left nothing behind: the check every fault test ends with.

Issue 8 asks, for each fault, that no model session, lease, task or file
handle leaks and that the process keeps serving. :func:`assert_no_leaks`
waits (bounded) for the bridge to settle, then checks each of those.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from phonebridge.calls.bridge import Bridge
from phonebridge.local import LocalBridge


def bridge_of(local: LocalBridge) -> Bridge:
    """The :class:`Bridge` object inside a running local bridge."""
    bridge: Bridge = local.app.state.deps.bridge
    return bridge


def open_fds() -> int:
    """File descriptors this process holds (sockets, recordings, the database)."""
    return len(os.listdir("/proc/self/fd"))


@dataclass(frozen=True, slots=True)
class Baseline:
    """What the process held before the calls under test."""

    tasks: int
    fds: int


def baseline() -> Baseline:
    return Baseline(tasks=len(asyncio.all_tasks()), fds=open_fds())


async def assert_no_leaks(
    local: LocalBridge, before: Baseline | None = None, *, within: float = 10.0
) -> None:
    """Every call ended, every lease, model socket, task and descriptor given back.

    ``before`` (from :func:`baseline`, taken after the bridge started) makes the
    task and descriptor counts part of the check; a small slack for descriptors
    covers the database pool opening a connection lazily.
    """
    bridge = bridge_of(local)
    simulators = [*local.self_hosted, local.polargrid, local.fal]
    async with asyncio.timeout(within):
        while True:
            open_models = [
                record
                for sim in simulators
                for record in sim.connections
                if record.closed_at is None
            ]
            settled = (
                not bridge.live
                and len(bridge.pending) == 0
                and bridge.admission.active_calls == 0
                and bridge.admission.pool.in_use == 0
                and not open_models
                and (before is None or len(asyncio.all_tasks()) <= before.tasks)
            )
            if settled:
                break
            await asyncio.sleep(0.02)
    if before is not None:
        assert open_fds() <= before.fds + 2, f"descriptors: {before.fds} -> {open_fds()}"
