"""Admission: exclusive self-hosted leases, overflow, the per-instance cap."""

from __future__ import annotations

import asyncio

import pytest

from phonebridge.calls.admission import Admission, ServerPool
from phonebridge.errors import CapacityError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(urls: list[str], providers: set[str], max_calls: int = 10) -> Admission:
    pool = ServerPool(urls, clock=FakeClock(), cooldown_seconds=30)
    return Admission(pool, available_providers=providers, max_calls=max_calls)


async def test_one_call_per_self_hosted_server() -> None:
    admission = make(["ws://a", "ws://b"], {"personaplex"})
    first = await admission.acquire("personaplex", None)
    second = await admission.acquire("personaplex", None)
    assert {first.server_url, second.server_url} == {"ws://a", "ws://b"}
    with pytest.raises(CapacityError):
        await admission.acquire("personaplex", None)
    first.release()
    third = await admission.acquire("personaplex", None)
    assert third.server_url == first.server_url


async def test_release_is_idempotent() -> None:
    admission = make(["ws://a"], {"personaplex"})
    lease = await admission.acquire("personaplex", None)
    lease.release()
    lease.release()
    assert admission.active_calls == 0
    other = await admission.acquire("personaplex", None)
    lease.release()  # a stale lease must not free the server someone else holds
    assert admission.pool.in_use == 1
    other.release()


async def test_overflow_when_pool_is_full() -> None:
    admission = make(["ws://a"], {"personaplex", "polargrid"})
    await admission.acquire("personaplex", "polargrid")
    lease = await admission.acquire("personaplex", "polargrid")
    assert lease.provider == "polargrid"
    assert lease.overflowed
    assert lease.server_url is None


async def test_overflow_to_unconfigured_provider_is_busy() -> None:
    admission = make(["ws://a"], {"personaplex"})
    await admission.acquire("personaplex", "fal")
    with pytest.raises(CapacityError, match="overflow fal unavailable"):
        await admission.acquire("personaplex", "fal")


async def test_instance_cap_and_drain() -> None:
    admission = make([], {"fal"}, max_calls=2)
    await admission.acquire("fal", None)
    await admission.acquire("fal", None)
    assert not admission.can_take_calls()
    with pytest.raises(CapacityError, match="cap"):
        await admission.acquire("fal", None)
    admission.draining = True
    with pytest.raises(CapacityError, match="draining"):
        await admission.acquire("fal", None)


async def test_rested_server_is_skipped_until_cooldown_ends() -> None:
    clock = FakeClock()
    pool = ServerPool(["ws://a"], clock=clock, cooldown_seconds=30)
    admission = Admission(pool, available_providers={"personaplex"}, max_calls=5)
    await pool.rest("ws://a")
    assert not admission.can_take_calls()
    with pytest.raises(CapacityError):
        await admission.acquire("personaplex", None)
    clock.now += 31
    assert (await admission.acquire("personaplex", None)).server_url == "ws://a"


async def test_move_to_overflow_releases_the_failed_server() -> None:
    admission = make(["ws://a"], {"personaplex", "fal"}, max_calls=1)
    lease = await admission.acquire("personaplex", "fal")
    moved = await admission.move_to_overflow(lease, "fal")
    assert (moved.provider, moved.overflowed) == ("fal", True)
    assert lease.released
    assert admission.pool.in_use == 0
    assert admission.active_calls == 1  # one call, one slot: the cap still holds
    with pytest.raises(CapacityError, match="overflow polargrid unavailable"):
        await admission.move_to_overflow(moved, "polargrid")
    assert admission.active_calls == 0


async def test_a_released_overflow_lease_releases_its_riders_once() -> None:
    admission = make(["ws://a"], {"personaplex", "fal"})
    lease = await admission.acquire("personaplex", "fal")
    released: list[str] = []
    lease.riders.append(lambda: released.append("guard slot"))
    moved = await admission.move_to_overflow(lease, "fal")
    assert released == []  # handed on with the call, not released with the old lease
    moved.release()
    moved.release()
    assert released == ["guard slot"]


async def test_riders_are_released_when_overflow_fails() -> None:
    admission = make(["ws://a"], {"personaplex"})
    lease = await admission.acquire("personaplex", None)
    released: list[str] = []
    lease.riders.append(lambda: released.append("guard slot"))
    with pytest.raises(CapacityError):
        await admission.move_to_overflow(lease, "fal")
    assert released == ["guard slot"]


async def test_concurrent_acquires_waiting_on_the_store_cannot_overshoot_the_cap() -> None:
    class SlowPool(ServerPool):
        async def try_acquire(self):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.01)  # a round trip to Redis
            return self.acquire_now()

    pool = SlowPool(["ws://a", "ws://b", "ws://c"], clock=FakeClock())
    admission = Admission(pool, available_providers={"personaplex"}, max_calls=2)
    results = await asyncio.gather(
        *(admission.acquire("personaplex", None) for _ in range(3)), return_exceptions=True
    )
    assert sum(1 for r in results if isinstance(r, CapacityError)) == 1
    assert admission.active_calls == 2
