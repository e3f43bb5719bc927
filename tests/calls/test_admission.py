"""Admission: exclusive self-hosted leases, overflow, the per-instance cap."""

from __future__ import annotations

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


def test_one_call_per_self_hosted_server() -> None:
    admission = make(["ws://a", "ws://b"], {"personaplex"})
    first = admission.acquire("personaplex", None)
    second = admission.acquire("personaplex", None)
    assert {first.server_url, second.server_url} == {"ws://a", "ws://b"}
    with pytest.raises(CapacityError):
        admission.acquire("personaplex", None)
    first.release()
    third = admission.acquire("personaplex", None)
    assert third.server_url == first.server_url


def test_release_is_idempotent() -> None:
    admission = make(["ws://a"], {"personaplex"})
    lease = admission.acquire("personaplex", None)
    lease.release()
    lease.release()
    assert admission.active_calls == 0
    other = admission.acquire("personaplex", None)
    lease.release()  # a stale lease must not free the server someone else holds
    assert admission.pool.in_use == 1
    other.release()


def test_overflow_when_pool_is_full() -> None:
    admission = make(["ws://a"], {"personaplex", "polargrid"})
    admission.acquire("personaplex", "polargrid")
    lease = admission.acquire("personaplex", "polargrid")
    assert lease.provider == "polargrid"
    assert lease.overflowed
    assert lease.server_url is None


def test_overflow_to_unconfigured_provider_is_busy() -> None:
    admission = make(["ws://a"], {"personaplex"})
    admission.acquire("personaplex", "fal")
    with pytest.raises(CapacityError, match="overflow fal unavailable"):
        admission.acquire("personaplex", "fal")


def test_instance_cap_and_drain() -> None:
    admission = make([], {"fal"}, max_calls=2)
    admission.acquire("fal", None)
    admission.acquire("fal", None)
    assert not admission.can_take_calls()
    with pytest.raises(CapacityError, match="cap"):
        admission.acquire("fal", None)
    admission.draining = True
    with pytest.raises(CapacityError, match="draining"):
        admission.acquire("fal", None)


def test_rested_server_is_skipped_until_cooldown_ends() -> None:
    clock = FakeClock()
    pool = ServerPool(["ws://a"], clock=clock, cooldown_seconds=30)
    admission = Admission(pool, available_providers={"personaplex"}, max_calls=5)
    pool.rest("ws://a")
    assert not admission.can_take_calls()
    with pytest.raises(CapacityError):
        admission.acquire("personaplex", None)
    clock.now += 31
    assert admission.acquire("personaplex", None).server_url == "ws://a"


def test_move_to_overflow_releases_the_failed_server() -> None:
    admission = make(["ws://a"], {"personaplex", "fal"}, max_calls=1)
    lease = admission.acquire("personaplex", "fal")
    moved = admission.move_to_overflow(lease, "fal")
    assert (moved.provider, moved.overflowed) == ("fal", True)
    assert lease.released
    assert admission.pool.in_use == 0
    assert admission.active_calls == 1  # one call, one slot: the cap still holds
    with pytest.raises(CapacityError, match="overflow polargrid unavailable"):
        admission.move_to_overflow(moved, "polargrid")
    assert admission.active_calls == 0
