"""How late the event loop runs: the one number that says a bridge is overloaded.

Every call's work (both directions, the 20 ms input clock) shares one event
loop. When the loop is busy, each frame waits on top of its own processing,
and the input clock falls behind real time. A probe that asks to wake every
20 ms — the frame period — and records how late it woke measures exactly that
wait. Its cost is one wake-up per 20 ms for the whole process, not per call.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

PROBE_PERIOD_SECONDS = 0.020  # the frame period: one probe per frame slot


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


async def watch_event_loop_lag(lag: Observer, period: float = PROBE_PERIOD_SECONDS) -> None:
    """Forever: sleep until the next ``period`` boundary, observe how late we woke."""
    loop = asyncio.get_running_loop()
    due = loop.time() + period
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        now = loop.time()
        lateness = now - due
        lag.observe(max(0.0, lateness))
        # Re-arm from the schedule, not from now, so one stall is counted once
        # rather than shifting every later deadline; skip slots a stall swallowed.
        due += period
        if due <= now:
            due = now + period
