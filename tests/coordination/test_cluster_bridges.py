"""Several real bridges sharing one real Redis and one self-hosted pool.

Each bridge is a whole in-process replica (``build_app``, uvicorn, its own
Redis client, its own call index); the phone simulator places signed calls
over loopback; the PersonaPlex simulators (TEST DOUBLES) record any second
concurrent connection to a self-hosted server, which is the failure leases
exist to prevent (PROTOCOLS.md §2.1).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx

from phonebridge.coordination.build import Coordination
from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions, local_bridge
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport

from ..conftest import record_of, tone_mulaw
from ..realservers.redis_server import RedisServer

CITYSAN = "+14165550101"  # personaplex, overflow polargrid
SHAKSHUKA = "+14165550102"  # personaplex, no overflow
TTL = 1.0  # the smallest the settings allow: quick quarantine and expiry
QUICK = SimulatorOptions(reply="echo", conditioning_delay=0.2)


def coordination_of(bridge: LocalBridge) -> Coordination:
    coordination = bridge.app.state.deps.coordination
    assert isinstance(coordination, Coordination)
    return coordination


@asynccontextmanager
async def cluster(
    tmp_path: Path, personas_dir: Path, redis: RedisServer, urls: Sequence[str], replicas: int
) -> AsyncIterator[list[LocalBridge]]:
    async with AsyncExitStack() as stack:
        bridges = [
            await stack.enter_async_context(
                local_bridge(
                    personas_dir=personas_dir,
                    data_dir=tmp_path / f"data-{n}",
                    simulators=QUICK,
                    personaplex_urls=tuple(urls),  # the shared pool, not each bridge's own
                    redis_url=redis.url,
                    lease_ttl_seconds=TTL,
                    redis_timeout_seconds=0.2,
                )
            )
            for n in range(replicas)
        ]
        await wait_for_pool(bridges, len(urls))
        yield bridges


async def wait_for_pool(bridges: Sequence[LocalBridge], free: int) -> None:
    """Every bridge sees ``free`` servers (a fresh Redis quarantines the pool for a TTL)."""
    async with asyncio.timeout(10):
        while any(coordination_of(b).leases.free_count() < free for b in bridges):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def call(bridge: LocalBridge, to: str, from_: str, seconds: float) -> DialReport:
    async with asyncio.timeout(30):
        return await dial(
            bridge.url,
            to=to,
            from_=from_,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            audio=tone_mulaw(seconds),
            tail=0.2,
        )


async def test_concurrent_webhooks_on_three_replicas_never_share_a_server(
    tmp_path: Path, personas_dir: Path, redis_server: RedisServer
) -> None:
    calls, k = 9, 2
    async with AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                PersonaPlexSimulator(flavour="self-hosted", reply="echo", conditioning_delay=0.2)
            )
            for _ in range(k)
        ]
        bridges = await stack.enter_async_context(
            cluster(tmp_path, personas_dir, redis_server, [sim.url for sim in pool], replicas=3)
        )
        # Every webhook at once, spread over the replicas; each call outlives
        # the burst, so every lease is held while the others are asked for.
        reports = await asyncio.gather(
            *(call(bridges[n % 3], CITYSAN, f"+1500555{n:04d}", seconds=1.5) for n in range(calls))
        )
        for sim in pool:
            assert sim.second_connections == []  # no server ever had two sessions
            assert len(sim.connections) == 1
        assert all(report.frames_received > 0 for report in reports), reports
        hosted = sum(len(b.polargrid.connections) for b in bridges)
        assert hosted == calls - min(calls, k)  # exactly K self-hosted sessions granted
        records = [await record_of(bridges[n % 3], r.call_sid) for n, r in enumerate(reports)]
        assert sorted(r.provider for r in records).count("personaplex") == k
        # Every lease was given back (compare-and-delete), none left to expire.
        for bridge in bridges:
            link = coordination_of(bridge).link
            assert link is not None
            await link.settle()
            assert bridge.app.state.deps.bridge.admission.pool.in_use == 0
        assert await link.client.keys("phonebridge:lease:*") == []


async def test_redis_stopped_and_restarted_mid_traffic(
    tmp_path: Path, personas_dir: Path, redis_server: RedisServer
) -> None:
    async with AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                PersonaPlexSimulator(flavour="self-hosted", reply="echo", conditioning_delay=0.2)
            )
            for _ in range(2)
        ]
        (bridge,) = await stack.enter_async_context(
            cluster(tmp_path, personas_dir, redis_server, [sim.url for sim in pool], replicas=1)
        )
        coordination = coordination_of(bridge)
        live = asyncio.create_task(call(bridge, CITYSAN, "+15005550001", seconds=4.0))
        async with asyncio.timeout(10):
            await pool[0].wait_for_connections(1)  # the pool's first server takes it

        redis_server.stop()
        # A new call never takes the free self-hosted server without Redis:
        # it overflows to the hosted provider...
        overflowed = await call(bridge, CITYSAN, "+15005550002", seconds=0.3)
        assert overflowed.frames_received > 0
        assert (await record_of(bridge, overflowed.call_sid)).provider == "polargrid"
        assert sum(len(sim.connections) for sim in pool) == 1
        # ...or, with no overflow, hears busy.
        busy = await call(bridge, SHAKSHUKA, "+15005550003", seconds=0.3)
        assert busy.twiml_verbs == ["Say", "Hangup"]
        assert (await record_of(bridge, busy.call_sid)).end_reason == "busy"
        async with httpx.AsyncClient() as http:
            ready = await http.get(bridge.url + "/readyz")
            assert ready.status_code == 200  # hosted providers still take calls
            assert "redis DOWN" in ready.text
            metrics = (await http.get(bridge.url + "/metrics")).text
            assert "phonebridge_coordination_up 0.0" in metrics

        # The call in progress carries on to its normal end.
        report = await live
        assert report.frames_received > 0
        assert (await record_of(bridge, report.call_sid)).end_reason == "caller_hangup"
        assert coordination.metrics.lease_renew_failures._value.get() >= 1

        redis_server.start()  # empty, same port: recovery needs nobody's help
        await wait_for_pool([bridge], 2)
        async with httpx.AsyncClient() as http:
            ready = await http.get(bridge.url + "/readyz")
            assert "redis up" in ready.text
        back = await call(bridge, CITYSAN, "+15005550004", seconds=0.3)
        assert (await record_of(bridge, back.call_sid)).provider == "personaplex"
        assert sum(len(sim.connections) for sim in pool) == 2
        assert all(sim.second_connections == [] for sim in pool)
