"""Guard windows, replay memory, Retry-After gates and heartbeats across two replicas."""

from __future__ import annotations

import asyncio
import time

import pytest

from phonebridge.calls.guard import Admitted, GuardLimits, GuardReason, Refused
from phonebridge.errors import ModelRateLimited

from .conftest import TTL, Replicas

OFF = GuardLimits(caller_calls_per_window=0, caller_max_concurrent=0, global_calls_per_minute=0)
ALICE, BOB = "+15005550111", "+15005550222"


def _limits(**changes: int) -> GuardLimits:
    values = {
        "caller_calls_per_window": OFF.caller_calls_per_window,
        "caller_max_concurrent": OFF.caller_max_concurrent,
        "global_calls_per_minute": OFF.global_calls_per_minute,
    }
    values.update(changes)
    return GuardLimits(**values)


async def admit_and_confirm(replica: object, caller: str, sid: str) -> Admitted:
    guard = getattr(replica, "guard")  # noqa: B009
    decision = await guard.admit(caller, sid)
    assert isinstance(decision, Admitted), decision
    guard.confirm(decision.caller, sid)
    return decision


async def test_the_hourly_caller_limit_holds_across_replicas(replicas: Replicas) -> None:
    a = replicas("a", limits=_limits(caller_calls_per_window=2))
    b = replicas("b", limits=_limits(caller_calls_per_window=2))
    assert a.guard is not None
    assert b.guard is not None
    await admit_and_confirm(a, ALICE, "CA1")
    await admit_and_confirm(b, ALICE, "CA2")
    refused = await a.guard.admit(ALICE, "CA3")
    assert isinstance(refused, Refused)
    assert refused.reason is GuardReason.CALLER_RATE
    assert refused.retry_after is not None
    assert 3500 < refused.retry_after <= 3600
    assert isinstance(await b.guard.admit(BOB, "CA4"), Admitted)  # another caller is fine


async def test_a_busy_answer_gives_the_reservation_back(replicas: Replicas) -> None:
    a = replicas("a", limits=_limits(caller_calls_per_window=1))
    b = replicas("b", limits=_limits(caller_calls_per_window=1))
    assert a.guard is not None
    assert b.guard is not None
    decision = await a.guard.admit(ALICE, "CA1")
    assert isinstance(decision, Admitted)
    # Reserved atomically: a concurrent admission elsewhere sees it...
    assert isinstance(await b.guard.admit(ALICE, "CA2"), Refused)
    # ...and the call got the busy answer after all: it uses no quota.
    await a.guard.cancel(decision.caller, "CA1")
    assert isinstance(await b.guard.admit(ALICE, "CA3"), Admitted)


async def test_the_per_minute_cap_is_cluster_wide(replicas: Replicas) -> None:
    a = replicas("a", limits=_limits(global_calls_per_minute=2))
    b = replicas("b", limits=_limits(global_calls_per_minute=2))
    assert a.guard is not None
    await admit_and_confirm(a, ALICE, "CA1")
    await admit_and_confirm(b, BOB, "CA2")
    refused = await a.guard.admit("+15005550333", "CA3")
    assert isinstance(refused, Refused)
    assert refused.reason is GuardReason.GLOBAL_RATE
    assert "cluster" in refused.detail


async def test_concurrent_calls_per_caller_count_across_replicas_and_end_with_the_call(
    replicas: Replicas,
) -> None:
    a = replicas("a", limits=_limits(caller_max_concurrent=1))
    b = replicas("b", limits=_limits(caller_max_concurrent=1))
    assert a.guard is not None
    assert b.guard is not None
    assert a.link is not None
    first = await admit_and_confirm(a, ALICE, "CA1")
    refused = await b.guard.admit(ALICE, "CA2")
    assert isinstance(refused, Refused)
    assert refused.reason is GuardReason.CALLER_CONCURRENT
    a.guard.release(first.caller, "CA1")  # the call ended
    await a.link.settle()
    assert isinstance(await b.guard.admit(ALICE, "CA3"), Admitted)


async def test_a_dead_replicas_calls_stop_counting_within_the_ttl(replicas: Replicas) -> None:
    dead = replicas("dead", limits=_limits(caller_max_concurrent=1))
    alive = replicas("alive", limits=_limits(caller_max_concurrent=1))
    assert alive.guard is not None
    assert alive.ticker is not None
    await admit_and_confirm(dead, ALICE, "CA1")  # then killed: never renewed, never released
    await admit_and_confirm(alive, BOB, "CA2")  # renewed by its tick
    for _ in range(5):
        await alive.ticker.tick()
        await asyncio.sleep(TTL / 3)
    assert isinstance(await alive.guard.admit(ALICE, "CA3"), Admitted)
    bob_again = await alive.guard.admit(BOB, "CA4")
    assert isinstance(bob_again, Refused)  # Bob's live call still holds its slot


async def test_a_replayed_webhook_is_refused_on_every_replica(replicas: Replicas) -> None:
    a, b = replicas("a"), replicas("b")
    assert await a.replay.first_answer("CA1")
    assert not await b.replay.first_answer("CA1")
    assert not await a.replay.first_answer("CA1")
    assert await b.replay.first_answer("CA2")


async def test_a_pending_calls_answer_is_given_again_on_any_replica_until_claimed(
    replicas: Replicas,
) -> None:
    a, b = replicas("a"), replicas("b")
    assert await a.replay.first_answer("CA1")
    await a.replay.remember_answer("CA1", "<Response>a</Response>", ttl_seconds=5)
    # Twilio's retry on another replica: not the first answer, but the same document.
    assert not await b.replay.first_answer("CA1")
    assert await b.replay.previous_answer("CA1") == "<Response>a</Response>"
    a.replay.forget_answer("CA1")  # the stream claimed the call
    assert a.link is not None
    await a.link.settle()
    assert await b.replay.previous_answer("CA1") is None  # now a replay: hang up
    # The answer of a call whose stream never came expires with the pending timeout.
    assert await a.replay.first_answer("CA2")
    await a.replay.remember_answer("CA2", "<Response/>", ttl_seconds=0.1)
    await asyncio.sleep(0.2)
    assert await b.replay.previous_answer("CA2") is None


async def test_one_replicas_429_holds_every_replica_off(replicas: Replicas) -> None:
    a, b = replicas("a"), replicas("b")
    now = time.monotonic()
    await b.gate("fal").check(now)  # open
    await a.gate("fal").hold(now, 0.3)
    with pytest.raises(ModelRateLimited) as raised:
        await b.gate("fal").check(now)
    assert raised.value.retryable
    assert raised.value.retry_after is not None
    await b.gate("polargrid").check(now)  # one gate per provider
    await a.gate("fal").hold(now, 0.05)  # a shorter wait never shortens the running one
    await asyncio.sleep(0.1)
    with pytest.raises(ModelRateLimited):
        await b.gate("fal").check(time.monotonic())
    await asyncio.sleep(0.3)
    await b.gate("fal").check(time.monotonic())


async def test_alive_replicas_forget_one_that_stops_beating(replicas: Replicas) -> None:
    a, b = replicas("a"), replicas("b")
    assert a.ticker is not None
    assert b.ticker is not None
    await a.ticker.tick()
    await b.ticker.tick()
    assert await b.alive_replicas() == {"a", "b"}
    for _ in range(5):  # a is gone (kill -9); b keeps beating
        await asyncio.sleep(TTL / 3)
        await b.ticker.tick()
    assert await b.alive_replicas() == {"b"}
    await b.aclose()  # a clean shutdown leaves at once
    assert await a.alive_replicas() == set()
