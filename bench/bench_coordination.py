"""What shared coordination costs: Redis round trips per call, and webhook latency.

Runs the real bridge in-process (``build_app`` + uvicorn on loopback, as
``phonebridge demo`` does) twice: with the in-memory coordination (the
default) and with a real ``redis-server`` (Debian package) on loopback. Each
run places ``--calls`` calls one after another, each as Twilio's two HTTP
requests without a media stream:

1. the signed voice webhook (replay memory, guard, lease: the work that
   waits on Redis), timed from the client: this is the latency Twilio sees;
2. the signed ``<Connect action>`` request, which abandons the pending call
   and releases its lease and guard slot (in the background).

Reported: the webhook's p50/p99 in each mode and the difference; Redis round
trips per call by operation (client-side count of requests, from
``phonebridge_coordination_requests_total``), and the per-replica tick
(heartbeat + all renewals in one script, every TTL/3) that does not depend
on the number of calls. Loopback Redis: add your network's RTT per round
trip for a Redis on another host.

Run: ``.venv/bin/python bench/bench_coordination.py [--calls 400]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/realservers: the same redis-server the tests start

from phonebridge.local import (  # noqa: E402
    DEMO_AUTH_TOKEN,
    LocalBridge,
    SimulatorOptions,
    local_bridge,
)
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign  # noqa: E402
from tests.realservers.redis_server import RedisServer  # noqa: E402

CITYSAN = "+14165550101"
_REQUESTS = re.compile(r'^phonebridge_coordination_requests_total\{op="([a-z_]+)"\} (\S+)$', re.M)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def requests_by_op(http: httpx.AsyncClient, bridge: LocalBridge) -> dict[str, float]:
    text = (await http.get(bridge.url + "/metrics")).text
    return {op: float(value) for op, value in _REQUESTS.findall(text)}


async def post_signed(
    http: httpx.AsyncClient, bridge: LocalBridge, path: str, params: dict[str, str]
) -> httpx.Response:
    url = bridge.public_url.rstrip("/") + path
    headers = {SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, url, params)}
    return await http.post(bridge.url + path, data=params, headers=headers)


@contextlib.asynccontextmanager
async def running(work: Path, redis_url: str | None) -> AsyncIterator[LocalBridge]:
    personas = work / "personas"
    if not personas.exists():
        shutil.copytree(REPO / "personas", personas)
    overrides: dict[str, Any] = {
        # The guard runs (its script is part of the cost) but never refuses here.
        "caller_max_calls_per_hour": 1_000_000,
        "max_new_calls_per_minute": 1_000_000,
    }
    if redis_url is not None:
        overrides["redis_url"] = redis_url
    async with local_bridge(
        personas_dir=personas,
        data_dir=work / f"data-{'redis' if redis_url else 'memory'}",
        simulators=SimulatorOptions(reply="silence", conditioning_delay=0.05),
        **overrides,
    ) as bridge:
        coordination = bridge.app.state.deps.coordination
        async with asyncio.timeout(30):  # a fresh Redis quarantines the pool for one TTL
            while coordination.leases.free_count() < 1:  # noqa: ASYNC110 - polled state
                await asyncio.sleep(0.1)
        yield bridge


async def measure(
    bridge: LocalBridge, calls: int, warmup: int
) -> tuple[list[float], dict[str, float], float]:
    coordination = bridge.app.state.deps.coordination
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=15) as http:
        before: dict[str, float] = {}
        started = 0.0
        for n in range(warmup + calls):
            if n == warmup:
                before = await requests_by_op(http, bridge)
                started = time.monotonic()
            sid = f"CA{n:032x}"
            params = {
                "CallSid": sid,
                "AccountSid": "AC" + "0" * 32,
                "From": f"+1500555{n % 10_000:04d}",
                "To": CITYSAN,
                "CallStatus": "ringing",
                "Direction": "inbound",
            }
            t0 = time.perf_counter()
            answer = await post_signed(http, bridge, "/twilio/voice", params)
            elapsed = time.perf_counter() - t0
            if answer.status_code != 200 or "<Stream" not in answer.text:
                raise RuntimeError(f"call {n} not connected: {answer.status_code} {answer.text}")
            if n >= warmup:
                latencies.append(elapsed)
            # Twilio's action request: the stream "failed", the pending call is abandoned.
            ended = {**params, "CallStatus": "in-progress"}
            await post_signed(http, bridge, "/twilio/stream-ended", ended)
            if coordination.link is not None:
                await coordination.link.settle()  # the release landed: next call finds it free
        after = await requests_by_op(http, bridge)
        seconds = time.monotonic() - started
    per_call = {op: (after.get(op, 0.0) - before.get(op, 0.0)) for op in after}
    return latencies, per_call, seconds


async def main(calls: int, warmup: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-coord-") as tmp:
        work = Path(tmp)
        async with running(work, None) as bridge:
            memory, _, _ = await measure(bridge, calls, warmup)
        with RedisServer(work / "redis") as redis:
            async with running(work, redis.url) as bridge:
                shared, requests, seconds = await measure(bridge, calls, warmup)
    ticks = requests.pop("tick", 0.0)
    trips = {op: count / calls for op, count in sorted(requests.items()) if count}
    print(f"{calls} calls after {warmup} warm-up, one at a time, loopback Redis")
    print()
    print("| webhook latency | p50 ms | p99 ms | mean ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("in memory", memory), ("Redis", shared)):
        print(
            f"| {name} | {percentile(values, 50) * 1e3:.2f} | {percentile(values, 99) * 1e3:.2f} "
            f"| {statistics.fmean(values) * 1e3:.2f} |"
        )
    print(
        f"| added by Redis | {(percentile(shared, 50) - percentile(memory, 50)) * 1e3:+.2f} "
        f"| {(percentile(shared, 99) - percentile(memory, 99)) * 1e3:+.2f} "
        f"| {(statistics.fmean(shared) - statistics.fmean(memory)) * 1e3:+.2f} |"
    )
    print()
    print("| Redis round trips per call | count |")
    print("|---|---:|")
    for op, count in trips.items():
        print(f"| {op} | {count:.2f} |")
    print(f"| **total per call** | **{sum(trips.values()):.2f}** |")
    print(
        f"| tick per replica (heartbeat + every renewal, not per call) | {ticks / seconds:.2f}/s |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # every abandoned pending call logs a warning
    asyncio.run(main(args.calls, args.warmup))
