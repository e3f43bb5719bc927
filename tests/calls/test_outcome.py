"""Who ended a call, and whether the carrier can still reach the caller after it."""

from __future__ import annotations

from phonebridge.calls.outcome import CallEndReason

GONE = {
    CallEndReason.CALLER_HANGUP,
    CallEndReason.CALLER_DROPPED,
    CallEndReason.NO_ANSWER,
    CallEndReason.LINE_BUSY,
    CallEndReason.CANCELED,
}


def test_the_caller_is_on_the_line_unless_they_left_or_were_never_reached() -> None:
    assert {r for r in CallEndReason if not r.caller_on_line} == GONE


def test_an_opt_out_is_the_callers_choice_but_they_wait_for_the_goodbye() -> None:
    assert CallEndReason.OPTED_OUT.ended_by == "caller"
    assert CallEndReason.OPTED_OUT.caller_on_line


def test_every_reason_the_bridge_ends_leaves_the_caller_reachable() -> None:
    assert all(r.caller_on_line for r in CallEndReason if r.ended_by != "caller")
