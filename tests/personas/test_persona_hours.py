"""Business hours on the persona's wall clock: an injected time, never the real one."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from phonebridge.personas.hours import BusinessHours, Weekly, is_open
from phonebridge.personas.loader import PersonaError, load_personas

TORONTO = "America/Toronto"
HOURS = BusinessHours(
    weekly=Weekly(
        mon=("09:00-17:00",),
        fri=("09:00-12:00", "13:00-17:00"),
        sat=("10:00-24:00",),
        sun=("09:00-17:00",),
    ),
    holidays=(date(2024, 12, 25),),
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2024-04-12T12:59", False),  # Friday 08:59 EDT: before hours
        ("2024-04-12T13:00", True),  # 09:00: opens on the minute
        ("2024-04-12T16:30", False),  # 12:30: the lunch gap
        ("2024-04-12T20:59", True),  # 16:59
        ("2024-04-12T21:00", False),  # 17:00: closed (ranges end exclusive)
        ("2024-04-14T03:59", True),  # Saturday 23:59 local (Sunday in UTC): up to 24:00
        ("2024-04-13T03:59", False),  # Friday 23:59 local (Saturday in UTC)
        ("2024-04-10T15:00", False),  # Wednesday: not listed, closed all day
        ("2024-12-25T15:00", False),  # a Wednesday anyway, but a holiday
        ("2024-12-23T15:00", True),  # Monday 10:00 EST
    ],
)
def test_before_inside_and_after_hours(moment: str, expected: bool) -> None:
    assert is_open(HOURS, TORONTO, utc(moment)) is expected


def test_a_holiday_closes_a_day_the_week_would_open() -> None:
    monday_holiday = BusinessHours(weekly=HOURS.weekly, holidays=(date(2024, 12, 23),))
    assert is_open(monday_holiday, TORONTO, utc("2024-12-23T15:00")) is False


def test_hours_follow_the_local_clock_across_the_spring_dst_change() -> None:
    # 2024-03-10 (a Sunday): Toronto moves from EST (-5) to EDT (-4) at 02:00.
    assert is_open(HOURS, TORONTO, utc("2024-03-10T13:00")) is True  # 09:00 EDT
    assert is_open(HOURS, TORONTO, utc("2024-03-10T12:59")) is False  # 08:59 EDT (09:59 in EST)
    assert is_open(HOURS, TORONTO, utc("2024-03-10T20:59")) is True  # 16:59 EDT
    assert is_open(HOURS, TORONTO, utc("2024-03-10T21:00")) is False  # 17:00 EDT (16:00 EST)
    # A week earlier, in EST, the same local hours are an hour later in UTC.
    assert is_open(HOURS, TORONTO, utc("2024-03-03T13:30")) is False  # 08:30 EST
    assert is_open(HOURS, TORONTO, utc("2024-03-03T21:30")) is True  # 16:30 EST


def test_hours_follow_the_local_clock_across_the_autumn_dst_change() -> None:
    # 2024-11-03 (a Sunday): EDT -> EST at 02:00.
    assert is_open(HOURS, TORONTO, utc("2024-11-03T13:59")) is False  # 08:59 EST
    assert is_open(HOURS, TORONTO, utc("2024-11-03T14:00")) is True  # 09:00 EST


def test_a_naive_time_is_a_bug() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(HOURS, TORONTO, datetime(2024, 4, 12, 12))


HEAD = 'name: A\nnumbers: ["+14165550101"]\nprovider: personaplex\nvoice: NATF1\nprompt: hi\n'


def test_hours_in_a_persona_file_are_checked_with_lines(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        HEAD + "hours:\n  weekly:\n    mon: ['9-5']\n    tue: ['18:00-09:00']\n    funday: []\n"
    )
    with pytest.raises(PersonaError) as caught:
        load_personas(tmp_path)
    text = [f"{p.line}: {p.message}" for p in caught.value.problems]
    assert any(
        line.startswith("8: hours.weekly.mon[0]: '9-5' is not a time range") for line in text
    )
    assert any(
        "9: hours.weekly.tue[0]" in line and "ends before it starts" in line for line in text
    )
    assert any(line.startswith("10: unknown key 'hours.weekly.funday'") for line in text), text


def test_hours_need_a_timezone(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(HEAD + "hours:\n  weekly:\n    mon: ['09:00-17:00']\n")
    with pytest.raises(PersonaError) as caught:
        load_personas(tmp_path)
    [problem] = caught.value.problems
    assert problem.line == 7
    assert "set timezone" in problem.message


def test_closed_route_must_name_another_persona(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        HEAD + "timezone: UTC\nhours:\n  weekly: {}\nclosed:\n  route_to: nobody\n"
    )
    with pytest.raises(PersonaError) as caught:
        load_personas(tmp_path)
    [problem] = caught.value.problems
    assert problem.line == 10
    assert "'nobody' is not a persona id" in problem.message
