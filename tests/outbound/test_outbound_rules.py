"""The pure rules: outbound settings, E.164 checks, callee zones and calling windows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phonebridge.config import Settings, SettingsError
from phonebridge.outbound.numbers import (
    CallingWindow,
    NumberRefused,
    next_open,
    normalize,
    window_open,
    zones_for,
)

BASE = {"PHONEBRIDGE_PUBLIC_URL": "https://x.example", "TWILIO_AUTH_TOKEN": "t"}


def test_outbound_is_off_unless_enabled_and_fenced() -> None:
    assert Settings.from_env(BASE).outbound_enabled is False
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, "PHONEBRIDGE_OUTBOUND_ENABLED": "1"})
    problems = "\n".join(caught.value.problems)
    assert "PHONEBRIDGE_OUTBOUND_COUNTRIES is empty" in problems
    assert "PHONEBRIDGE_OUTBOUND_CALLER_IDS is empty" in problems
    assert "TWILIO_ACCOUNT_SID" in problems
    settings = Settings.from_env(
        {
            **BASE,
            "PHONEBRIDGE_OUTBOUND_ENABLED": "1",
            "PHONEBRIDGE_OUTBOUND_COUNTRIES": "+1, 44",
            "PHONEBRIDGE_OUTBOUND_CALLER_IDS": "+14165550100",
            "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        }
    )
    assert settings.outbound_countries == (1, 44)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("PHONEBRIDGE_OUTBOUND_COUNTRIES", "1,usa", "not a country calling code"),
        ("PHONEBRIDGE_OUTBOUND_CALLER_IDS", "416-555-0100", "not an E.164 number"),
        ("PHONEBRIDGE_OUTBOUND_RING_SECONDS", "0", "1..600"),
        ("TWILIO_API_URL", "http://proxy.example", "uses http://"),
        ("TWILIO_API_URL", "https://u:p@proxy.example", "plain https://"),
    ],
)
def test_bad_outbound_settings_are_named(name: str, value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**BASE, name: value})
    assert any(problem in p for p in caught.value.problems)


def test_the_outbound_carrier_must_dial_and_have_its_credentials() -> None:
    fenced = {
        **BASE,
        "PHONEBRIDGE_OUTBOUND_ENABLED": "1",
        "PHONEBRIDGE_OUTBOUND_COUNTRIES": "1",
        "PHONEBRIDGE_OUTBOUND_CALLER_IDS": "+14165550100",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**fenced, "PHONEBRIDGE_OUTBOUND_CARRIER": "pigeon"})
    assert "PHONEBRIDGE_OUTBOUND_CARRIER 'pigeon' cannot place calls" in "\n".join(
        caught.value.problems
    )
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**fenced, "PHONEBRIDGE_OUTBOUND_CARRIER": "signalwire"})
    problems = "\n".join(caught.value.problems)
    assert "SIGNALWIRE_SPACE_URL are not all set" in problems
    assert "TWILIO_ACCOUNT_SID" not in problems  # Twilio's are not needed then
    settings = Settings.from_env(
        {
            **fenced,
            "PHONEBRIDGE_OUTBOUND_CARRIER": "signalwire",
            "SIGNALWIRE_SIGNING_KEY": "PSK",
            "SIGNALWIRE_PROJECT_ID": "p",
            "SIGNALWIRE_API_TOKEN": "PT",
            "SIGNALWIRE_SPACE_URL": "https://example.signalwire.com",
        }
    )
    assert settings.outbound_carrier == "signalwire"


def test_numbers_are_e164_in_allowed_countries() -> None:
    assert normalize(" +1 416 555 0123 ", [1]) == "+14165550123"
    with pytest.raises(NumberRefused, match=r"E\.164"):
        normalize("4165550123", [1])
    with pytest.raises(NumberRefused, match=r"country code \+44"):
        normalize("+442071838750", [1])
    with pytest.raises(NumberRefused, match="not a valid"):
        normalize("+1416555", [1])


def test_zones_come_from_the_row_then_the_number() -> None:
    assert zones_for("+14165550123") == ("America/Toronto",)
    assert zones_for("+14165550123", "Asia/Tokyo") == ("Asia/Tokyo",)
    assert len(zones_for("+18005550199")) > 5  # toll-free: every zone of the plan


def test_window_must_be_open_in_every_possible_zone() -> None:
    window = CallingWindow()
    at = datetime(2025, 1, 15, 14, 0, tzinfo=UTC)  # 09:00 Toronto, 06:00 Los Angeles
    assert window_open(window, ["America/Toronto"], at)
    assert not window_open(window, ["America/Toronto", "America/Los_Angeles"], at)
    opens = next_open(window, ["America/Toronto", "America/Los_Angeles"], at)
    assert opens == datetime(2025, 1, 15, 16, 0, tzinfo=UTC)  # 08:00 in Los Angeles
    # Tokyo, London and Los Angeles never share 08:00-21:00: never called
    apart = ["Asia/Tokyo", "Europe/London", "America/Los_Angeles"]
    assert next_open(window, apart, at) is None
    whole_day = CallingWindow.parse("00:00", "24:00")
    assert window_open(whole_day, apart, at)
