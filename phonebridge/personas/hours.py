"""Business hours (issue 15, "Business hours"): a weekly schedule plus holidays.

Outside hours a call opens no model session and takes no lease: the persona's
``closed`` message is said (then the call hangs up), or the call goes to
another persona. Times are the persona's wall clock (``timezone``, an IANA
name through :mod:`zoneinfo`), so a schedule of ``09:00-17:00`` means nine to
five local time on both sides of a daylight-saving change.

Pure: :func:`is_open` takes the time, the caller passes the clock.

```yaml
timezone: America/Toronto
hours:
  weekly:
    mon: ["09:00-17:00"]
    sat: ["10:00-12:00", "13:00-16:00"]
  holidays: ["2024-12-25"]
closed:
  say: "We're closed. Our hours are nine to five, Monday to Friday."
  # or: route_to: afterhours   (another persona's id)
```

A day that is not listed is closed all day. A range ends at or before
``24:00``; a night shift is two ranges on two days.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from .shown import shown

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-(([01][0-9]|2[0-3]):([0-5][0-9])|24:00)$")
MAX_RANGES_PER_DAY = 8
MAX_HOLIDAYS = 366
DEFAULT_CLOSED_MESSAGE = "We're closed right now. Please call back during our opening hours."


def timezone_name(value: str) -> str:
    """An IANA time zone name that :mod:`zoneinfo` knows."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone",
            "unknown time zone {value} (an IANA name such as America/Toronto or Europe/Berlin)",
            {"value": shown(value)},
        ) from None
    return value


def _time_range(value: str) -> str:
    match = _RANGE.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "time_range",
            "{value} is not a time range (HH:MM-HH:MM, 24-hour, e.g. 09:00-17:00)",
            {"value": shown(value)},
        )
    start, end = _parse_range(value)
    if end <= start:
        raise PydanticCustomError(
            "time_range_order",
            "{value} ends before it starts: a range past midnight is two ranges on two days",
            {"value": shown(value)},
        )
    return value


TimeRange = Annotated[str, AfterValidator(_time_range)]
DayRanges = Annotated[tuple[TimeRange, ...], Field(max_length=MAX_RANGES_PER_DAY)]


def _parse_range(value: str) -> tuple[int, int]:
    """Minutes since local midnight: (start, end), end may be 1440."""
    first, second = value.split("-")
    start_h, start_m = first.split(":")
    end_h, end_m = second.split(":")
    return int(start_h) * 60 + int(start_m), int(end_h) * 60 + int(end_m)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weekly(_Strict):
    """Opening ranges per weekday; an unlisted day is closed."""

    mon: DayRanges = ()
    tue: DayRanges = ()
    wed: DayRanges = ()
    thu: DayRanges = ()
    fri: DayRanges = ()
    sat: DayRanges = ()
    sun: DayRanges = ()


class BusinessHours(_Strict):
    weekly: Weekly
    holidays: Annotated[tuple[date, ...], Field(max_length=MAX_HOLIDAYS)] = ()
    """Local dates closed all day, whatever ``weekly`` says."""


def is_open(hours: BusinessHours, timezone: str, now: datetime) -> bool:
    """Is ``now`` (aware) inside the schedule, on the persona's local clock?"""
    if now.tzinfo is None:
        raise ValueError("is_open needs an aware datetime")
    local = now.astimezone(ZoneInfo(timezone))
    if local.date() in hours.holidays:
        return False
    ranges: tuple[str, ...] = getattr(hours.weekly, DAYS[local.weekday()])
    minute = _minute_of_day(local.time())
    for text in ranges:
        start, end = _parse_range(text)
        if start <= minute < end:
            return True
    return False


def _minute_of_day(moment: time) -> float:
    return moment.hour * 60 + moment.minute + moment.second / 60 + moment.microsecond / 60e6
