"""How long the operator overview takes on a big range, and how long it holds the event loop.

Run: .venv/bin/python bench/bench_overview.py [--calls N]

Fills a fresh SQLite call index with N calls spread over 30 days, then asks
for the overview by the day and by the hour while a 5 ms ticker runs on the
same event loop (as a live call's input clock would). Prints the time per
overview and the longest the ticker was held up: the figure that matters,
since the bridge's event loop also carries the calls' audio.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from phonebridge.storage.index import CallIndex, calls
from phonebridge.storage.stats import Bucket, overview

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 30


def rows(count: int, rng: random.Random) -> list[dict[str, Any]]:
    made = []
    for n in range(count):
        started = T0 + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        made.append(
            {
                "call_sid": f"CA{n:032x}",
                "stream_sid": f"MZ{n:032x}",
                "persona": "citysan",
                "provider": rng.choice(["personaplex", "polargrid"]),
                "status": "ended",
                "started_at": started,
                "ended_at": started + timedelta(seconds=60),
                "duration_seconds": 60.0,
                "end_reason": "caller_hangup",
                "model_socket_seconds": 59.0,
                "first_agent_audio_seconds": rng.uniform(0.2, 1.5),
                "updated_at": started,
            }
        )
    return made


async def main(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-overview-"))
    index = await CallIndex.create(f"sqlite+aiosqlite:///{folder / 'calls.db'}")
    try:
        async with index.engine.begin() as conn:
            await conn.execute(calls.insert(), rows(count, random.Random(13)))
        stalls: list[float] = []

        async def ticker() -> None:
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                stalls.append(time.perf_counter() - before - 0.005)

        tick = asyncio.create_task(ticker())
        buckets: tuple[Bucket, ...] = ("day", "hour")
        for bucket in buckets:
            started = time.perf_counter()
            result = await overview(index.engine, T0, T0 + timedelta(days=DAYS), bucket)
            took = time.perf_counter() - started
            print(f"by the {bucket}: {result.calls} calls in {took:.2f} s")
        tick.cancel()
        print(f"longest event-loop stall: {max(stalls) * 1000:.1f} ms")
    finally:
        await index.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().calls))
