"""A 429's ``Retry-After`` through the hosted clients (PROTOCOLS.md §3; RFC 9110 §10.2.3).

Real sockets against the simulator (a test double) refusing every upgrade
with 429. Both header forms must become the same wait: delta-seconds as is,
an HTTP date against the injected wall clock (a date already past means
"now"). The provider's gate then holds new sessions for that wait, stepped
here by an injected monotonic clock: no sleeping, no reading the real clock.
"""

from __future__ import annotations

from email.utils import formatdate

import pytest

from phonebridge.errors import ModelRateLimited
from phonebridge.models.base import ModelSessionFactory
from phonebridge.models.factory import FalSettings, PolarGridSettings, make_factory
from phonebridge.models.retry_gate import DEFAULT_WAIT_SECONDS
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.personaplex.server import Flavour
from phonebridge.simulators.personaplex.testing import REQUEST

WALL = 1_700_000_000.0  # the injected wall clock's "now" (2023-11-14T22:13:20Z)
MONOTONIC = 5_000.0  # the injected monotonic clock's start: unrelated to the wall clock


class SteppedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def http_date(epoch: float) -> str:
    """IMF-fixdate, the form RFC 9110 §5.6.7 says senders use."""
    return formatdate(epoch, usegmt=True)


def factory_for(
    flavour: Flavour, sim: PersonaPlexSimulator, clock: SteppedClock, wall: SteppedClock
) -> ModelSessionFactory:
    if flavour == "polargrid":
        settings: PolarGridSettings | FalSettings = PolarGridSettings(
            api_key="pg_test", base_url=sim.url
        )
    else:
        settings = FalSettings(api_key="fal-test", base_url=sim.url)
    return make_factory(flavour, settings, clock=clock, wall_clock=wall)


async def refused(factory: ModelSessionFactory) -> ModelRateLimited:
    with pytest.raises(ModelRateLimited) as caught:
        await factory.create(REQUEST).open()
    assert caught.value.retryable
    return caught.value


HOSTED: list[Flavour] = ["polargrid", "fal"]
FORMS = {
    "delta-seconds": ("20", 20.0),
    "http-date": (http_date(WALL + 20), 20.0),
    "obsolete-asctime-date": ("Tue Nov 14 22:13:40 2023", 20.0),  # no zone: GMT
    "past-date": (http_date(WALL - 3600), 0.0),
    "unreadable": ("in a while", None),
}


@pytest.mark.parametrize("flavour", HOSTED)
@pytest.mark.parametrize("form", FORMS)
async def test_both_forms_of_retry_after_become_the_same_wait(flavour: Flavour, form: str) -> None:
    header, wait = FORMS[form]
    clock, wall = SteppedClock(MONOTONIC), SteppedClock(WALL)
    async with PersonaPlexSimulator(flavour=flavour, reject_status=429, retry_after=header) as sim:
        error = await refused(factory_for(flavour, sim, clock, wall))
    assert error.retry_after == wait
    assert sim.rejected == [429]


@pytest.mark.parametrize("flavour", HOSTED)
@pytest.mark.parametrize("form", ["delta-seconds", "http-date"])
async def test_the_gate_holds_new_sessions_for_the_asked_time(flavour: Flavour, form: str) -> None:
    header, _ = FORMS[form]
    clock, wall = SteppedClock(MONOTONIC), SteppedClock(WALL)
    async with PersonaPlexSimulator(flavour=flavour, reject_status=429, retry_after=header) as sim:
        factory = factory_for(flavour, sim, clock, wall)
        await refused(factory)
        # 19.5 s later (by both clocks) the provider is not asked again: the
        # session fails at once, without an upgrade, saying how long is left.
        clock.now += 19.5
        wall.now += 19.5
        held = await refused(factory)
        assert held.retry_after == pytest.approx(0.5)
        assert sim.rejected == [429]
        # At 20 s the wait is over: the next session knocks again.
        clock.now += 0.5
        wall.now += 0.5
        await refused(factory)
        assert sim.rejected == [429, 429]


@pytest.mark.parametrize("flavour", HOSTED)
async def test_a_date_already_past_means_retry_now(flavour: Flavour) -> None:
    clock, wall = SteppedClock(MONOTONIC), SteppedClock(WALL)
    past = http_date(WALL - 3600)
    async with PersonaPlexSimulator(flavour=flavour, reject_status=429, retry_after=past) as sim:
        factory = factory_for(flavour, sim, clock, wall)
        await refused(factory)
        await refused(factory)  # same instant: no wait was asked, so it asks again
    assert sim.rejected == [429, 429]


@pytest.mark.parametrize("flavour", HOSTED)
async def test_the_date_is_read_by_the_wall_clock_not_the_monotonic_one(
    flavour: Flavour,
) -> None:
    """The monotonic clock's epoch is arbitrary: a date is only meaningful against the wall."""
    clock, wall = SteppedClock(MONOTONIC), SteppedClock(WALL + 15)  # the wall is 15 s later
    header = http_date(WALL + 20)
    async with PersonaPlexSimulator(flavour=flavour, reject_status=429, retry_after=header) as sim:
        factory = factory_for(flavour, sim, clock, wall)
        assert (await refused(factory)).retry_after == 5.0
        clock.now += 4.9
        await refused(factory)
        assert sim.rejected == [429]
        clock.now += 0.1
        await refused(factory)
    assert sim.rejected == [429, 429]


@pytest.mark.parametrize("flavour", HOSTED)
async def test_an_unreadable_retry_after_still_slows_down(flavour: Flavour) -> None:
    clock, wall = SteppedClock(MONOTONIC), SteppedClock(WALL)
    async with PersonaPlexSimulator(flavour=flavour, reject_status=429, retry_after="soon") as sim:
        factory = factory_for(flavour, sim, clock, wall)
        assert (await refused(factory)).retry_after is None
        clock.now += DEFAULT_WAIT_SECONDS - 0.1
        await refused(factory)
        assert sim.rejected == [429]
        clock.now += 0.1
        await refused(factory)
    assert sim.rejected == [429, 429]
