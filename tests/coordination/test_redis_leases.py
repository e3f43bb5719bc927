"""GPU leases in a real Redis, seen by two replicas (two independent clients)."""

from __future__ import annotations

import asyncio

import pytest

from phonebridge.coordination.base import ServerHold
from phonebridge.coordination.redis_leases import RedisServerLeases

from .conftest import TTL, Replicas, wait_until_granting


def leases_of(coordination: object) -> RedisServerLeases:
    leases = getattr(coordination, "leases")  # noqa: B009 - typed below
    assert isinstance(leases, RedisServerLeases)
    return leases


async def test_a_fresh_redis_grants_nothing_for_one_ttl_then_one_server_per_holder(
    replicas: Replicas,
) -> None:
    a, b = replicas("a"), replicas("b")
    # A Redis that never saw a replica may have lost leases that live calls hold.
    assert await a.leases.try_acquire() is None
    assert leases_of(a).quarantine_ms > 0
    await wait_until_granting(a)
    first = await a.leases.try_acquire()
    second = await b.leases.try_acquire()
    assert first is not None
    assert second is not None
    assert {first.url, second.url} == {"ws://gpu-1", "ws://gpu-2"}
    assert await a.leases.try_acquire() is None
    assert await b.leases.try_acquire() is None
    assert (a.leases.in_use, b.leases.in_use) == (1, 1)
    # Released by A (compare-and-delete, in the background): B may take it.
    a.leases.release(first)
    assert a.link is not None
    await a.link.settle()
    third = await b.leases.try_acquire()
    assert third is not None
    assert third.url == first.url


async def test_release_with_a_strangers_token_frees_nothing(replicas: Replicas) -> None:
    a, b = replicas("a", urls=("ws://gpu-1",)), replicas("b", urls=("ws://gpu-1",))
    await wait_until_granting(a)
    hold = await a.leases.try_acquire()
    assert hold is not None
    # B never held it: its release must not touch A's key...
    b.leases.release(ServerHold(hold.url, "b:forged"))
    # ...and even the raw compare-and-delete refuses a wrong token.
    lease = leases_of(a)
    assert a.link is not None
    deleted = await lease._release(keys=[lease.lease_key(hold.url)], args=["b:forged"])
    assert deleted == 0
    assert await b.leases.try_acquire() is None
    owner = await a.link.client.get(lease.lease_key(hold.url))
    assert owner == hold.token.encode()
    assert owner.startswith(b"a:")  # the key names its replica


async def test_a_dead_holder_frees_its_server_within_the_ttl_and_a_live_one_keeps_it(
    replicas: Replicas,
) -> None:
    urls = ("ws://gpu-1", "ws://gpu-2")
    dead, alive, other = replicas("dead", urls=urls), replicas("alive", urls=urls), replicas("c")
    await wait_until_granting(other)
    held_by_dead = await dead.leases.try_acquire()
    held_by_alive = await alive.leases.try_acquire()
    assert held_by_dead is not None
    assert held_by_alive is not None
    assert alive.ticker is not None
    # "alive" renews (its tick every TTL/3); "dead" never does, like a kill -9.
    for _ in range(6):
        await alive.ticker.tick()
        await asyncio.sleep(TTL / 3)
    taken = await other.leases.try_acquire()
    assert taken is not None
    assert taken.url == held_by_dead.url
    assert await other.leases.try_acquire() is None  # the renewed one is still held


async def test_a_rested_server_is_skipped_by_every_replica(replicas: Replicas) -> None:
    a, b = replicas("a"), replicas("b")
    await wait_until_granting(a)
    await a.leases.rest("ws://gpu-1")
    hold = await b.leases.try_acquire()
    assert hold is not None
    assert hold.url == "ws://gpu-2"
    assert await b.leases.try_acquire() is None  # gpu-1 rests, gpu-2 is held


async def test_a_stolen_lease_is_counted_as_a_hazard_and_never_deleted(
    replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    a = replicas("a", urls=("ws://gpu-1",))
    await wait_until_granting(a)
    hold = await a.leases.try_acquire()
    assert hold is not None
    assert a.link is not None
    assert a.ticker is not None
    key = leases_of(a).lease_key(hold.url)
    await a.link.client.set(key, "b:someone-else")  # granted elsewhere after our TTL ran out
    await a.ticker.tick()
    assert a.metrics.leases_lost._value.get() == 1
    assert "prompt-swap hazard" in caplog.text
    assert a.leases.in_use == 0  # no longer ours: not renewed...
    a.leases.release(hold)
    await a.link.settle()
    assert await a.link.client.get(key) == b"b:someone-else"  # ...and never deleted


async def test_a_restarted_redis_quarantines_the_pool_while_holders_take_their_keys_back(
    replicas: Replicas,
) -> None:
    a, b = replicas("a"), replicas("b")
    await wait_until_granting(a)
    hold = await a.leases.try_acquire()
    assert hold is not None
    assert a.link is not None
    assert a.ticker is not None
    await a.link.client.flushall()  # what a restart without persistence looks like
    # B asks first: the pool is quarantined, B must not get A's server.
    assert await b.leases.try_acquire() is None
    await a.ticker.tick()  # A's renewal finds its key gone and takes it back
    assert a.metrics.leases_reclaimed._value.get() == 1
    renewing = asyncio.create_task(a.ticker.run_forever())  # A's call goes on
    try:
        await wait_until_granting(b)
        other = await b.leases.try_acquire()
    finally:
        renewing.cancel()
    assert other is not None
    assert other.url != hold.url
    assert await b.leases.try_acquire() is None
