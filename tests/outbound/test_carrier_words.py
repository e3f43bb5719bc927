"""The carrier-neutral words of outbound calls: Twilio's callbacks translated into
them, and the business day the daily cap counts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phonebridge.outbound.campaigns import day_start
from phonebridge.telephony.twilio.dialer import call_status, machine_verdict


@pytest.mark.parametrize(
    ("answered_by", "verdict"),
    [
        ("human", "human"),
        ("machine_start", "machine"),
        ("fax", "machine"),
        ("machine_end_beep", "message_end"),
        ("machine_end_silence", "message_end"),
        ("machine_end_other", "message_end"),
        ("unknown", "unknown"),
        ("", "unknown"),
        ("MACHINE_START", "unknown"),  # Twilio's words are lower case; nothing is guessed
    ],
)
def test_twilio_answered_by_becomes_a_verdict(answered_by: str, verdict: str) -> None:
    assert machine_verdict(answered_by) == verdict


def test_twilio_call_status_is_taken_only_when_known() -> None:
    assert call_status("no-answer") == "no-answer"
    assert call_status("in-progress") == "in-progress"
    assert call_status("no_answer") is None
    assert call_status("") is None


def test_the_daily_cap_counts_the_business_day_not_utcs() -> None:
    # 02:30 UTC on 6 March is still 5 March in Toronto (UTC-5).
    now = datetime(2026, 3, 6, 2, 30, tzinfo=UTC)
    assert day_start(now, None) == datetime(2026, 3, 6, 0, 0, tzinfo=UTC)
    assert day_start(now, "America/Toronto") == datetime(2026, 3, 5, 5, 0, tzinfo=UTC)


def test_the_business_day_follows_daylight_saving_time() -> None:
    # Toronto moves to UTC-4 on 8 March 2026: that day starts at 05:00 UTC, the next at 04:00.
    assert day_start(datetime(2026, 3, 8, 12, tzinfo=UTC), "America/Toronto") == datetime(
        2026, 3, 8, 5, 0, tzinfo=UTC
    )
    assert day_start(datetime(2026, 3, 9, 12, tzinfo=UTC), "America/Toronto") == datetime(
        2026, 3, 9, 4, 0, tzinfo=UTC
    )
