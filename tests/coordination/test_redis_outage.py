"""Redis stopped, hung and restarted under the coordination: the defined outcomes.

- a new self-hosted lease is refused (never an unshared local one): the call
  overflows to a hosted provider or hears busy;
- the guard and replay memory go on with this replica's own state;
- holding a lease, renewals fail and are counted, nothing raises into the call;
- a hung Redis costs at most the request timeout;
- when Redis is back the link recovers by itself, the pool is quarantined
  for one TTL while live holders take their keys back.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from phonebridge.calls.admission import Admission
from phonebridge.calls.guard import Admitted, GuardLimits, Refused
from phonebridge.errors import CapacityError, CoordinationError

from ..realservers.redis_server import RedisServer
from .conftest import Replicas, wait_until_granting

LIMITS = GuardLimits(caller_calls_per_window=1, caller_max_concurrent=0, global_calls_per_minute=0)


async def test_redis_down_closes_the_self_hosted_pool_and_overflows(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    a = replicas("a", limits=LIMITS)
    await wait_until_granting(a)
    held = await a.leases.try_acquire()
    assert held is not None
    assert a.link is not None
    assert a.ticker is not None
    redis_server.stop()

    with pytest.raises(CoordinationError):
        await a.leases.try_acquire()
    assert not a.link.up
    assert not a.up
    assert a.metrics.up._value.get() == 0
    assert "DOWN" in a.status()
    # The circuit is open: the next request fails at once, without waiting.
    with pytest.raises(CoordinationError, match="retrying shortly"):
        await a.leases.try_acquire()

    both = Admission(a.leases, available_providers={"personaplex", "polargrid"}, max_calls=5)
    lease = await both.acquire("personaplex", "polargrid")
    assert (lease.provider, lease.server_url, lease.overflowed) == ("polargrid", None, True)
    assert both.readiness() is None  # hosted overflow still takes calls
    only_self_hosted = Admission(a.leases, available_providers={"personaplex"}, max_calls=5)
    with pytest.raises(CapacityError):
        await only_self_hosted.acquire("personaplex", None)
    assert only_self_hosted.readiness() == "coordination store unreachable: self-hosted pool closed"

    # Renewals of the live call's lease fail, are counted, and raise nothing into it.
    with pytest.raises(CoordinationError):
        await a.ticker.tick()
    assert a.metrics.lease_renew_failures._value.get() == 1
    assert a.leases.in_use == 1


async def test_redis_down_guard_and_replay_fall_back_to_this_replicas_own_state(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    a = replicas("a", limits=LIMITS)
    assert a.guard is not None
    first = await a.guard.admit("+15005550111", "CA1")
    assert isinstance(first, Admitted)
    a.guard.confirm(first.caller, "CA1")  # shadowed locally while Redis was up
    assert await a.replay.first_answer("CA1")
    redis_server.stop()

    # The caller's hourly limit of 1 still holds on this replica.
    again = await a.guard.admit("+15005550111", "CA2")
    assert isinstance(again, Refused)
    other = await a.guard.admit("+15005550222", "CA3")
    assert isinstance(other, Admitted)
    a.guard.confirm(other.caller, "CA3")
    a.guard.release(other.caller, "CA3")  # never raises with Redis gone
    assert not await a.replay.first_answer("CA1")
    assert await a.replay.first_answer("CA4")
    fallbacks = a.metrics.fallbacks
    assert fallbacks.labels("guard")._value.get() == 2
    assert fallbacks.labels("replay")._value.get() == 2


async def test_a_hung_redis_costs_a_request_its_timeout_only(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    a = replicas("a", limits=LIMITS)
    await wait_until_granting(a)
    redis_server.pause()
    try:
        async with asyncio.timeout(5):  # a bound for the test, not a timing assertion
            with pytest.raises(CoordinationError, match="timed out"):
                await a.leases.try_acquire()
            assert a.guard is not None
            assert isinstance(await a.guard.admit("+15005550111", "CA1"), Admitted)
    finally:
        redis_server.resume()


async def test_after_a_restart_the_link_recovers_and_live_leases_are_taken_back(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    a, b = replicas("a"), replicas("b")
    await wait_until_granting(a)
    held = await a.leases.try_acquire()
    assert held is not None
    assert a.link is not None
    assert a.ticker is not None
    redis_server.stop()
    with pytest.raises(CoordinationError):
        await a.ticker.tick()
    redis_server.start()  # same port, empty

    renewing = asyncio.create_task(a.ticker.run_forever())  # the live call's replica
    try:
        async with asyncio.timeout(5):
            while not a.link.up:  # noqa: ASYNC110 - the tick's probe notices, no call needed
                await asyncio.sleep(0.05)
        await wait_until_granting(b)
        other = await b.leases.try_acquire()
        assert other is not None
        assert other.url != held.url
        assert await b.leases.try_acquire() is None
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
    assert a.metrics.leases_reclaimed._value.get() == 1
    assert a.metrics.up._value.get() == 1
