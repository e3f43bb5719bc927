"""Plivo's words (CallStatus, Machine, call detail records) in the outbound service's."""

from __future__ import annotations

import pytest

from phonebridge.config import Settings, SettingsError
from phonebridge.errors import LocalProtocolError
from phonebridge.telephony.plivo.dialer import call_status, cdr_status, machine_verdict
from phonebridge.telephony.plivo.xml import voicemail_after_beep


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("completed", "completed"),
        ("busy", "busy"),
        ("no-answer", "no-answer"),
        ("failed", "failed"),
        ("cancel", "canceled"),  # Plivo spells it without "ed"
        ("timeout", "no-answer"),  # nobody reached: retried like a no-answer
        ("ringing", "ringing"),
        ("in-progress", "in-progress"),
        ("Busy", "busy"),
        ("", None),
        ("answered", None),
    ],
)
def test_plivo_call_status(word: str, status: str | None) -> None:
    assert call_status(word) == status


@pytest.mark.parametrize(
    ("machine", "mode", "verdict"),
    [
        ("true", "hangup", "machine"),
        ("true", "voicemail", "message_end"),  # the document waits for the beep itself
        ("True", "voicemail", "message_end"),
        ("false", "voicemail", "human"),
        ("false", "hangup", "human"),
        ("", "hangup", "unknown"),
        ("maybe", "voicemail", "unknown"),
    ],
)
def test_plivo_machine_verdict(machine: str, mode: str, verdict: str) -> None:
    assert machine_verdict(machine, mode) == verdict  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "status"),
    [
        (
            {"answer_time": "2025-01-01 10:00:00+00:00", "hangup_cause_name": "Normal Hangup"},
            "completed",
        ),
        ({"call_state": "ANSWER", "hangup_cause_name": "End Of XML Instructions"}, "completed"),
        ({"answer_time": None, "hangup_cause_name": "Busy Line"}, "busy"),
        ({"hangup_cause_name": "No Answer"}, "no-answer"),
        ({"hangup_cause_name": "Ring Timeout Reached"}, "no-answer"),
        ({"hangup_cause_name": "Canceled"}, "canceled"),
        ({"hangup_cause_name": "Invalid Destination Address"}, "failed"),
        ({}, "failed"),
    ],
)
def test_plivo_call_detail_record_outcome(record: dict[str, object], status: str) -> None:
    assert cdr_status(record) == status


def test_voicemail_document_waits_for_the_beep_then_speaks() -> None:
    text = voicemail_after_beep("Pickup is on Tuesday & Friday.", wait_seconds=30)
    assert text.index('<Wait length="30" beep="true" />') < text.index("<Speak>")
    assert "<Speak>Pickup is on Tuesday &amp; Friday.</Speak><Hangup />" in text
    with pytest.raises(LocalProtocolError):
        voicemail_after_beep("  ", wait_seconds=30)
    with pytest.raises(LocalProtocolError):
        voicemail_after_beep("hello", wait_seconds=0)


def test_outbound_carrier_plivo_needs_its_credentials() -> None:
    base = {
        "PHONEBRIDGE_PUBLIC_URL": "https://bridge.example.com",
        "TWILIO_AUTH_TOKEN": "t",
        "PHONEBRIDGE_OUTBOUND_CARRIER": "plivo",
    }
    with pytest.raises(SettingsError, match="PHONEBRIDGE_OUTBOUND_CARRIER is plivo"):
        Settings.from_env(
            {
                **base,
                "PHONEBRIDGE_OUTBOUND_ENABLED": "1",
                "PHONEBRIDGE_OUTBOUND_COUNTRIES": "1",
                "PHONEBRIDGE_OUTBOUND_CALLER_IDS": "+14165550100",
            }
        )
    assert Settings.from_env(base).outbound_carrier == "plivo"  # accepted when off
