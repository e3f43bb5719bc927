"""Transfer triggers and the warm hand-off's states: pure cores, time stepped by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.calls.transfer.summary import (
    MAX_AGENT_CHARS,
    CallFacts,
    Utterances,
    spoken_number,
    whisper_text,
)
from phonebridge.calls.transfer.triggers import KeypadTriggers, PhraseTrigger
from phonebridge.calls.transfer.warm import RING_GRACE_SECONDS, TransferResult, WarmHandoff
from phonebridge.personas.transfer import DEFAULT_WHISPER, KeyAction


def pieces(text: str) -> list[str]:
    """Text as SentencePiece-like pieces: each word with its leading space."""
    return [" " + word for word in text.split()]


# -- keypad ----------------------------------------------------------------------------


def test_mapped_keys_fire_and_others_go_to_the_model() -> None:
    keypad = KeypadTriggers({"0": KeyAction.TRANSFER, "#": KeyAction.REPEAT})
    assert keypad.key("5", 1.0) is None
    firing = keypad.key("0", 2.0)
    assert firing is not None
    assert (firing.trigger, firing.action, firing.detail, firing.at) == (
        "dtmf",
        KeyAction.TRANSFER,
        "key 0",
        2.0,
    )


def test_a_second_press_is_marked_ignored_but_repeat_repeats() -> None:
    keypad = KeypadTriggers({"0": KeyAction.TRANSFER, "#": KeyAction.REPEAT})
    assert keypad.key("0", 1.0) is not None
    again = keypad.key("0", 1.2)
    assert again is not None
    assert "ignored" in again.detail
    assert keypad.key("#", 2.0) is not None
    repeat = keypad.key("#", 3.0)
    assert repeat is not None
    assert "ignored" not in repeat.detail


# -- phrases -----------------------------------------------------------------------------


def test_a_phrase_waits_for_the_sentence_to_end_then_fires_once() -> None:
    trigger = PhraseTrigger(["transfer you"], confirm_seconds=1.5, trigger="agent_phrase")
    at = 10.0
    for piece in pieces("Sure, let me transfer you to our billing team"):
        trigger.text(piece, at)
        at += 0.2
    last = at - 0.2
    # Matched at "you" (10.8) but the agent kept talking: the delay counts from its last word.
    assert trigger.next_deadline() == last + 1.5
    assert trigger.poll(last + 1.4) is None
    firing = trigger.poll(last + 1.5)
    assert firing is not None
    assert firing.action is KeyAction.TRANSFER
    assert "transfer you" in firing.detail
    # Never twice, even if the model says it again.
    for piece in pieces("I will transfer you now"):
        trigger.text(piece, at)
    assert trigger.next_deadline() is None
    assert trigger.poll(at + 100) is None


def test_a_model_that_never_stops_talking_is_still_handed_over() -> None:
    trigger = PhraseTrigger(["connect you"], confirm_seconds=1.0, trigger="agent_phrase")
    trigger.text(" I'll connect you", 0.0)
    at = 0.0
    fired = None
    while fired is None and at < 30:
        at += 0.1
        trigger.text(" and", at)
        fired = trigger.poll(at)
    assert fired is not None
    assert at <= 4.0 + 0.1  # MAX_CONFIRM_FACTOR x the confirmation delay


def test_patterns_are_case_insensitive_and_span_pieces() -> None:
    trigger = PhraseTrigger(
        [r"speak (to|with) a (human|person)"], confirm_seconds=0, trigger="caller_phrase"
    )
    for piece in [" Can", " I", " SPEAK", " wi", "th", " a", " Person"]:
        trigger.text(piece, 1.0)
    assert trigger.poll(1.0) is not None


def test_no_match_no_deadline_and_disarm_stops_it() -> None:
    trigger = PhraseTrigger(["transfer you"], confirm_seconds=1, trigger="agent_phrase")
    for piece in pieces("How can I help you today"):
        trigger.text(piece, 1.0)
    assert trigger.next_deadline() is None
    trigger.disarm()
    trigger.text(" transfer you", 2.0)
    assert trigger.poll(100.0) is None


@given(st.lists(st.text(max_size=12), max_size=60))
def test_any_text_fires_at_most_once(texts: list[str]) -> None:
    trigger = PhraseTrigger(["a"], confirm_seconds=0.5, trigger="agent_phrase")
    fired = 0
    for n, piece in enumerate(texts):
        trigger.text(piece, n * 0.3)
        fired += trigger.poll(n * 0.3) is not None
    fired += trigger.poll(1e9) is not None
    assert fired == (1 if any("a" in t.lower() for t in texts) else 0)


# -- summary ---------------------------------------------------------------------------------


def test_utterances_split_at_sentence_ends_and_pauses() -> None:
    said = Utterances(keep=3)
    for n, piece in enumerate(pieces("Hello there. How can I help?")):
        said.add(piece, n * 0.1)
    for piece in pieces("Your pickup is"):
        said.add(piece, 5.0)
    said.add(" Friday", 7.0)  # a pause: a new utterance
    assert said.last() == ("How can I help?", "Your pickup is", "Friday")


def test_the_whisper_names_the_caller_the_persona_and_the_keys() -> None:
    facts = CallFacts(
        persona="CitySan waste services",
        caller="+14165550123",
        agent=("I'll transfer you to the office.",),
        digits="42",
    )
    text = whisper_text(DEFAULT_WHISPER, facts, "1")
    assert "CitySan waste services" in text
    assert spoken_number("+14165550123") == "1 4 1 6 5 5 5 0 1 2 3"
    assert "1 4 1 6 5 5 5 0 1 2 3" in text
    assert "I'll transfer you to the office." in text
    assert "4 2" in text
    assert text.endswith("Press 1 to accept the call.")


def test_the_whisper_stays_short() -> None:
    facts = CallFacts("P", "+1", tuple("word " * 100 for _ in range(3)), "")
    text = whisper_text("{agent}", facts, "1")
    assert len(text) <= MAX_AGENT_CHARS


# -- warm hand-off states ----------------------------------------------------------------------


def warm(now: float = 0.0) -> WarmHandoff:
    return WarmHandoff(now=now, ring_seconds=20, accept_seconds=10, accept_key="1")


def test_accept_decline_and_no_key() -> None:
    accepted, declined, silent = warm(), warm(), warm()
    for handoff in (accepted, declined, silent):
        assert handoff.answered(3.0)
    assert accepted.key("1") is TransferResult.ACCEPTED
    assert declined.key("2") is TransferResult.DECLINED
    assert silent.key("") is TransferResult.UNANSWERED


def test_a_result_is_final() -> None:
    handoff = warm()
    handoff.answered(1.0)
    assert handoff.key("1") is TransferResult.ACCEPTED
    assert handoff.key("2") is None
    assert handoff.human_ended("completed") is None
    assert handoff.caller_gone() is None
    assert handoff.poll(1e6) is None
    assert handoff.result is TransferResult.ACCEPTED


def test_no_answer_from_the_carrier_or_the_bound() -> None:
    busy = warm()
    assert busy.human_ended("busy") is TransferResult.UNANSWERED
    ringing = warm(now=5.0)
    assert ringing.next_deadline() == 5.0 + 20 + RING_GRACE_SECONDS
    assert ringing.poll(5.0 + 20) is None
    assert ringing.poll(5.0 + 20 + RING_GRACE_SECONDS) is TransferResult.UNANSWERED


def test_hanging_up_during_the_whisper_is_a_decline_and_a_late_answer_is_ignored() -> None:
    handoff = warm()
    handoff.answered(2.0)
    assert handoff.human_ended("completed") is TransferResult.DECLINED
    late = warm()
    assert late.caller_gone() is TransferResult.ABANDONED
    assert late.answered(3.0) is False
    assert late.key("1") is None


def test_a_catastrophic_pattern_is_dropped_and_the_others_still_fire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # (a|a)+$ over a run of a's that ends in something else backtracks 2^n ways:
    # with Python's re this search would hold the event loop for longer than a call.
    trigger = PhraseTrigger(
        ["(a|a)+$", "transfer you"], confirm_seconds=1.0, trigger="agent_phrase"
    )
    trigger.text("a" * 60 + "!", 1.0)
    assert trigger.dropped == ["(a|a)+$"]
    assert "dropped for this call" in caplog.text
    trigger.text(" I will transfer you now", 2.0)
    assert trigger.poll(3.5) is not None  # the sane pattern still hands over
    assert trigger.dropped == ["(a|a)+$"]  # reported once, never searched again
