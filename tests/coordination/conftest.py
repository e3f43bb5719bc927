"""Coordination tests run against a real redis-server (tests/realservers)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest

from phonebridge.calls.guard import GuardLimits
from phonebridge.coordination.build import Coordination, build_coordination
from phonebridge.errors import CoordinationError

from ..realservers.redis_server import RedisServer, redis_server

__all__ = ["Replicas", "redis_server", "replicas", "wait_until_granting"]

TTL = 0.4  # seconds: short, so expiry tests are quick
TIMEOUT = 0.2

Replicas = Callable[..., Coordination]


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[Replicas]:
    """``replicas("a", urls=[...], limits=...)``: a replica's coordination, own Redis client."""
    async with AsyncExitStack() as stack:

        def make(
            replica_id: str,
            *,
            urls: tuple[str, ...] = ("ws://gpu-1", "ws://gpu-2"),
            limits: GuardLimits | None = None,
            ttl: float = TTL,
        ) -> Coordination:
            coordination = build_coordination(
                redis_url=redis_server.url,
                personaplex_urls=urls,
                guard_limits=limits,
                clock=time.monotonic,
                replica_id=replica_id,
                lease_ttl_seconds=ttl,
                redis_timeout_seconds=TIMEOUT,
            )
            stack.push_async_callback(coordination.aclose)
            return coordination

        yield make


async def wait_until_granting(coordination: Coordination) -> None:
    """Wait out the quarantine a fresh (or restarted) Redis starts with.

    A tick that times out (a fresh redis-server still warming up while the
    other xdist worker loads the CPU) is retried: this waits for liveness, the
    tests' assertions come after it."""
    assert coordination.ticker is not None
    async with asyncio.timeout(5):
        while True:
            with contextlib.suppress(CoordinationError):
                await coordination.ticker.tick()
                if coordination.leases.free_count() > 0:
                    return
            await asyncio.sleep(0.05)
