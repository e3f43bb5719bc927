"""The toll-fraud guard, stepped by hand: rates, concurrency, anonymous callers, memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.calls.guard import (
    ANONYMOUS_CALLER,
    GLOBAL_WINDOW_SECONDS,
    Admitted,
    AnsweredCalls,
    GuardLimits,
    GuardReason,
    Refused,
    TollFraudGuard,
    caller_key,
    mask_number,
)

ALICE = "+14165550123"
BOB = "+14165550456"
OFF = {"caller_calls_per_window": 0, "caller_max_concurrent": 0, "global_calls_per_minute": 0}


def guard(**limits: int | float) -> TollFraudGuard:
    return TollFraudGuard(GuardLimits(**(OFF | limits)))  # type: ignore[arg-type]


def attempt(g: TollFraudGuard, number: str, now: float, active: int = 0) -> Admitted | Refused:
    """What the bridge does: check, and record when admitted."""
    decision = g.check(number, now, active_calls=active)
    if isinstance(decision, Admitted):
        g.record(decision.caller, now)
    return decision


def test_the_n_plus_first_call_in_the_window_is_refused_with_its_reason() -> None:
    g = guard(caller_calls_per_window=3, caller_window_seconds=3600)
    assert [type(attempt(g, ALICE, t)) for t in (0, 10, 20)] == [Admitted] * 3
    refused = attempt(g, ALICE, 30)
    assert isinstance(refused, Refused)
    assert refused.reason is GuardReason.CALLER_RATE
    assert refused.caller == ALICE
    assert refused.retry_after == pytest.approx(3570)  # when the call at t=0 leaves the window
    assert isinstance(attempt(g, BOB, 30), Admitted)  # another caller is not affected


def test_the_window_slides() -> None:
    g = guard(caller_calls_per_window=2, caller_window_seconds=100)
    attempt(g, ALICE, 0)
    attempt(g, ALICE, 50)
    assert isinstance(attempt(g, ALICE, 99.9), Refused)
    assert isinstance(attempt(g, ALICE, 100), Admitted)  # the call at 0 has left
    assert isinstance(attempt(g, ALICE, 120), Refused)  # 50 and 100 are still in


def test_refused_calls_do_not_use_up_the_quota() -> None:
    g = guard(caller_calls_per_window=1, caller_window_seconds=100)
    attempt(g, ALICE, 0)
    for t in range(1, 100):
        assert isinstance(attempt(g, ALICE, t), Refused)
    assert isinstance(attempt(g, ALICE, 100), Admitted)


def test_a_checked_but_unrecorded_call_counts_for_nothing() -> None:
    """The bridge records only once a lease is taken: a busy answer uses no quota."""
    g = guard(caller_calls_per_window=1, global_calls_per_minute=1)
    for _ in range(5):
        assert isinstance(g.check(ALICE, 0, active_calls=0), Admitted)
    assert g.tracked_callers == 0


def test_global_rate_limit_counts_every_caller() -> None:
    g = guard(global_calls_per_minute=3)
    for t, number in enumerate((ALICE, BOB, "+15550000001")):
        assert isinstance(attempt(g, number, t), Admitted)
    refused = attempt(g, "+15550000002", 10)
    assert isinstance(refused, Refused)
    assert refused.reason is GuardReason.GLOBAL_RATE
    assert refused.retry_after == pytest.approx(GLOBAL_WINDOW_SECONDS - 10)
    assert isinstance(attempt(g, "+15550000002", GLOBAL_WINDOW_SECONDS), Admitted)


def test_per_caller_concurrency_uses_the_count_passed_in() -> None:
    g = guard(caller_max_concurrent=2)
    assert isinstance(attempt(g, ALICE, 0, active=1), Admitted)
    refused = attempt(g, ALICE, 0, active=2)
    assert isinstance(refused, Refused)
    assert refused.reason is GuardReason.CALLER_CONCURRENT
    assert refused.retry_after is None  # frees up when a call ends, not at a time


def test_zero_turns_every_limit_off() -> None:
    g = guard()
    for t in range(1000):
        assert isinstance(attempt(g, ALICE, t * 0.001, active=500), Admitted)
    assert g.tracked_callers == 0  # nothing to remember when no rate is limited


@pytest.mark.parametrize(
    "withheld",
    ["", "  ", "anonymous", "Anonymous", "+266696687", "Restricted", "UNKNOWN", "+7378742833"],
)
def test_withheld_caller_ids_share_one_bucket(withheld: str) -> None:
    assert caller_key(withheld) == ANONYMOUS_CALLER
    g = guard(caller_calls_per_window=1)
    attempt(g, "anonymous", 0)
    refused = attempt(g, withheld, 1)
    assert isinstance(refused, Refused)
    assert refused.caller == ANONYMOUS_CALLER


def test_a_real_number_is_its_own_bucket() -> None:
    assert caller_key(" +14165550123 ") == ALICE
    assert caller_key("client:alice") == "client:alice"


def test_callers_whose_window_is_empty_are_forgotten() -> None:
    g = guard(caller_calls_per_window=5, caller_window_seconds=60)
    for n in range(100):
        attempt(g, f"+1555{n:07d}", n * 0.1)
    assert g.tracked_callers == 100
    g.check(ALICE, 60 + 9.85, active_calls=0)  # callers 0..99 were admitted at 0..9.9
    assert g.tracked_callers == 1  # only the one admitted at 9.9 is still in its window


def test_a_flood_of_distinct_numbers_is_capped() -> None:
    g = guard(caller_calls_per_window=1, caller_window_seconds=3600, max_tracked_callers=50)
    for n in range(10_000):
        attempt(g, f"+1555{n:07d}", n * 0.001)
        assert g.tracked_callers <= 50
    # The most recent callers are the ones remembered.
    assert isinstance(attempt(g, f"+1555{9_999:07d}", 11), Refused)


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="limits"):
        GuardLimits(caller_calls_per_window=-1)
    with pytest.raises(ValueError, match="window"):
        GuardLimits(caller_window_seconds=0)
    with pytest.raises(ValueError, match="max_tracked_callers"):
        GuardLimits(max_tracked_callers=0)


def test_masking_keeps_only_the_last_four_digits() -> None:
    assert mask_number("+14165550123") == "+*******0123"
    assert mask_number("client:alice") == "******:*lice"
    assert mask_number("123") == "123"
    assert mask_number(ANONYMOUS_CALLER) == ANONYMOUS_CALLER
    assert "4165550" not in mask_number("+14165550123")


# -- properties --------------------------------------------------------------------------

callers = st.sampled_from([ALICE, BOB, "anonymous", "", "+266696687", "+15550001111"])
steps = st.lists(
    st.tuples(callers, st.floats(min_value=0, max_value=50, allow_nan=False)), max_size=200
)


@settings(max_examples=200, deadline=None)
@given(
    steps=steps,
    per_caller=st.integers(min_value=1, max_value=5),
    window=st.floats(min_value=1, max_value=200, allow_nan=False),
    per_minute=st.integers(min_value=0, max_value=8),
)
def test_never_admits_more_than_the_limit_in_any_window(
    steps: list[tuple[str, float]], per_caller: int, window: float, per_minute: int
) -> None:
    g = guard(
        caller_calls_per_window=per_caller,
        caller_window_seconds=window,
        global_calls_per_minute=per_minute,
    )
    now = 0.0
    admitted: dict[str, list[float]] = {}
    everyone: list[float] = []
    for number, gap in steps:
        now += gap
        if isinstance(attempt(g, number, now), Admitted):
            admitted.setdefault(caller_key(number), []).append(now)
            everyone.append(now)
    for times in admitted.values():
        # Any window [s, s + window) holding per_caller + 1 admissions would
        # contain times[i] and times[i + per_caller] less than `window` apart.
        for first, last in zip(times, times[per_caller:], strict=False):
            # The guard compares ``now >= first + window``; ``last - first``
            # rounds differently in floating point (found by Hypothesis:
            # 18.69059035650367 - 17.0 < 1.6905903565036713), hence the 1 ns.
            assert last - first >= window - 1e-9
    if per_minute:
        for first, last in zip(everyone, everyone[per_minute:], strict=False):
            assert last - first >= GLOBAL_WINDOW_SECONDS


@settings(max_examples=100, deadline=None)
@given(
    numbers=st.lists(st.integers(min_value=0, max_value=10**9), max_size=300),
    cap=st.integers(min_value=1, max_value=20),
)
def test_memory_stays_bounded_whatever_arrives(numbers: list[int], cap: int) -> None:
    g = guard(caller_calls_per_window=3, caller_window_seconds=3600, max_tracked_callers=cap)
    for t, number in enumerate(numbers):
        attempt(g, f"+{number}", float(t))
        assert g.tracked_callers <= cap


def test_answered_calls_remember_the_newest_sids_only() -> None:
    answered = AnsweredCalls(capacity=3)
    for sid in ("CA1", "CA2", "CA3", "CA4"):
        answered.add(sid)
    assert "CA1" not in answered
    assert all(sid in answered for sid in ("CA2", "CA3", "CA4"))
    answered.add("CA2")  # seen again: becomes the newest
    answered.add("CA5")
    assert "CA2" in answered
    assert "CA3" not in answered
    assert len(answered) == 3
