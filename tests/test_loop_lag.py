"""The event-loop lag probe sees a blocked loop, and only then."""

from __future__ import annotations

import asyncio
import time

from phonebridge.loop_lag import watch_event_loop_lag


class Samples:
    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, amount: float) -> None:
        self.values.append(amount)


async def test_a_blocked_loop_is_observed_as_lag_once() -> None:
    samples = Samples()
    probe = asyncio.create_task(watch_event_loop_lag(samples, period=0.01))
    try:
        await asyncio.sleep(0.05)
        before = len(samples.values)
        time.sleep(0.08)  # noqa: ASYNC251 - blocking the loop is the point: every timer is now late
        await asyncio.sleep(0.05)
    finally:
        probe.cancel()
    late = [value for value in samples.values[before:] if value >= 0.05]
    # The stall is counted once (the probe re-arms from the schedule and skips
    # the slots the stall swallowed), not once per missed slot.
    assert len(late) == 1
    assert all(value >= 0 for value in samples.values)
