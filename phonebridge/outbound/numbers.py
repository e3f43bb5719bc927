"""Numbers we may dial, and when: E.164, country allow-list, calling windows.

Pure functions over ``phonenumbers`` (Google's libphonenumber metadata: which
numbers are valid, which country they belong to, which time zones they span).
Time is passed in; nothing here reads a clock.

Calling windows are in the callee's local time. The zone is the contact row's
when it has one; else the number's, from ``phonenumbers.timezone``. A number
that maps to several zones (a US toll-free or mobile number maps to every zone
of the country) may be called only when the window is open in *every* one of
them: when we cannot tell where the callee is, we wait for a time that is
acceptable wherever they are.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

from phonebridge.errors import PhonebridgeError

UNKNOWN_ZONE = "Etc/Unknown"


class NumberRefused(PhonebridgeError):
    """A number that may not be dialled; the message says why (shown to the operator)."""


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Local hours when a callee may be called: ``start <= local time < end``."""

    start: time = time(8, 0)
    end: time = time(21, 0)

    def __post_init__(self) -> None:
        if self.start >= self.end and self.end != time(0, 0):
            raise ValueError("a calling window must start before it ends")

    @classmethod
    def parse(cls, start: str, end: str) -> CallingWindow:
        """``"08:00"``, ``"21:00"``; ``"24:00"`` as the end means midnight."""
        try:
            begin = time.fromisoformat(start)
            finish = time(0, 0) if end == "24:00" else time.fromisoformat(end)
        except ValueError as exc:
            raise ValueError(f"calling window times must be HH:MM, got {start!r}-{end!r}") from exc
        return cls(begin, finish)

    def is_open(self, local: datetime) -> bool:
        now = local.time().replace(tzinfo=None)
        if self.end == time(0, 0):  # until midnight
            return now >= self.start
        return self.start <= now < self.end

    def shown(self) -> str:
        end = "24:00" if self.end == time(0, 0) else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


def normalize(number: str, allowed_countries: Collection[int]) -> str:
    """The E.164 form of ``number``, or :class:`NumberRefused` saying why not.

    The number must be written in international form (``+`` and the country
    code): we never guess a region for a number we are about to pay to call.
    """
    text = number.strip()
    if not text.startswith("+"):
        raise NumberRefused(f"{number!r} is not in E.164 form (write + and the country code)")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise NumberRefused(f"{number!r} is not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise NumberRefused(f"{number!r} is not a valid phone number")
    if parsed.country_code not in allowed_countries:
        raise NumberRefused(
            f"{number!r} is in country code +{parsed.country_code}, which outbound calls may "
            "not dial (PHONEBRIDGE_OUTBOUND_COUNTRIES)"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def zones_for(number: str, contact_zone: str | None = None) -> tuple[str, ...]:
    """Every time zone the callee may be in (one, when the contact row names it)."""
    if contact_zone:
        return (contact_zone,)
    parsed = phonenumbers.parse(number, None)
    zones = tuple(z for z in number_zones.time_zones_for_number(parsed) if z != UNKNOWN_ZONE)
    if zones:
        return zones
    # No geography for this number: every zone of its country.
    region = phonenumbers.region_code_for_number(parsed)
    country = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if country is not None:
        zones = tuple(z for z in number_zones.time_zones_for_number(country) if z != UNKNOWN_ZONE)
    return zones or ("UTC",)


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone; ValueError otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like America/Toronto)"
        ) from exc
    return name


def window_open(window: CallingWindow, zones: Sequence[str], now: datetime) -> bool:
    """Is the window open at ``now`` (aware) in every zone of ``zones``?"""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return all(window.is_open(now.astimezone(ZoneInfo(zone))) for zone in zones)


def next_open(
    window: CallingWindow, zones: Sequence[str], now: datetime, *, step_minutes: int = 15
) -> datetime | None:
    """The first quarter hour from ``now`` (within two days) when the window is open
    in every zone; ``None`` when the zones never share an open moment."""
    at = now.astimezone(UTC)
    for _ in range(2 * 24 * 60 // step_minutes):
        if window_open(window, zones, at):
            return at
        at = (at + timedelta(minutes=step_minutes)).replace(second=0, microsecond=0)
    return None
