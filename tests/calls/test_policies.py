"""Several features watching one call through the one policy seam (calls/policy.py)."""

from __future__ import annotations

import pytest

from phonebridge.calls.outcome import CallEndReason, CallOutcome, Handoff
from phonebridge.calls.policy import Policies, TransferFacts
from phonebridge.outbound.opt_out import OptOutPolicy


class Controls:
    """The session's side of the seam, recording what policies asked for."""

    def __init__(self) -> None:
        self.ended: list[tuple[CallEndReason, str]] = []

    def now(self) -> float:
        return 0.0

    def end(self, reason: CallEndReason, detail: str = "", handoff: Handoff | None = None) -> None:
        self.ended.append((reason, detail))

    def note(self, kind: str, detail: str) -> None:
        pass

    def hold(self, loop: bytes) -> None:
        pass

    def resume(self) -> None:
        pass

    async def tell_model(self, text: str) -> bool:
        return False

    def record_transfer(self, facts: TransferFacts) -> None:
        pass


class Recorder:
    """A policy that consumes ``takes`` keys and fails to close when told to."""

    def __init__(self, takes: str = "", deadline: float | None = None, fail: bool = False):
        self.takes = takes
        self.deadline = deadline
        self.fail = fail
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.polled: list[float] = []
        self.closed = False

    def start(self, call: object) -> None:
        pass

    async def key(self, digit: str, at: float) -> bool:
        self.keys.append(digit)
        return digit in self.takes

    def agent_text(self, piece: str, at: float) -> None:
        self.texts.append(piece)

    def caller_text(self, text: str, at: float) -> None:
        self.texts.append(text)

    def next_deadline(self) -> float | None:
        return self.deadline

    def poll(self, now: float) -> None:
        self.polled.append(now)

    async def close(self, outcome: CallOutcome) -> None:
        self.closed = True
        if self.fail:
            raise RuntimeError("close failed")


async def test_a_key_goes_to_the_first_policy_that_takes_it() -> None:
    first, second = Recorder(takes="9"), Recorder(takes="0")
    both = Policies([first, second])
    assert await both.key("9", 1.0)
    assert await both.key("0", 2.0)
    assert not await both.key("5", 3.0)
    assert first.keys == ["9", "0", "5"]
    assert second.keys == ["0", "5"]  # 9 was taken before it


async def test_every_policy_sees_text_time_and_the_earliest_deadline_wins() -> None:
    early, late, idle = Recorder(deadline=2.0), Recorder(deadline=5.0), Recorder()
    all_three = Policies([late, early, idle])
    all_three.agent_text("hello", 1.0)
    all_three.caller_text("hi", 1.5)
    all_three.poll(2.0)
    assert all_three.next_deadline() == 2.0
    assert Policies([idle]).next_deadline() is None
    for policy in (early, late, idle):
        assert policy.texts == ["hello", "hi"]
        assert policy.polled == [2.0]


async def test_closing_closes_them_all_even_when_one_fails() -> None:
    broken, fine = Recorder(fail=True), Recorder()
    with pytest.raises(RuntimeError, match="close failed"):
        await Policies([broken, fine]).close(CallOutcome("CA1", "p", CallEndReason.CALLER_HANGUP))
    assert broken.closed
    assert fine.closed


async def test_the_opt_out_digit_ends_the_call_once_and_hides_the_key() -> None:
    opted: list[str] = []
    policy = OptOutPolicy("9", lambda: opted.append("yes"))
    keypad = Recorder(takes="9")  # a transfer keypad map that would also take 9
    call = Controls()
    both = Policies([policy, keypad])
    both.start(call)
    assert not await both.key("1", 0.5)
    assert await both.key("9", 1.0)
    assert await both.key("9", 1.2)  # pressed again while the call ends
    assert opted == ["yes"]
    assert call.ended == [(CallEndReason.OPTED_OUT, "pressed 9: added to do-not-call")]
    assert keypad.keys == ["1"]  # the keypad never saw the opt-out digit
