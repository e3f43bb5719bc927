"""Calls for the overview tests: real ones through the bridge, and rows with known values.

Real calls (``place_real_calls``), with the one self-hosted simulator:
a long Shakshuka call holds the only server (the caller presses 5), a second
Shakshuka call meanwhile is busy (no overflow), and a CitySan call overflows
to PolarGrid. Known rows (``insert_known_rows``) sit on 2025-03-10 between
09:00 and 12:00 UTC, with two more just outside that range, and
``KNOWN_HOURLY`` is what the overview must say about them, worked out by hand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallEnd, CallRecord, CallStart, CallStatus, CallUpdate

from ..conftest import record_of, tone_mulaw
from .conftest import CITYSAN, SHAKSHUKA


@dataclass(frozen=True, slots=True)
class RealCalls:
    long: CallRecord  # answered on the self-hosted server, with a key press
    busy: CallRecord
    overflow: CallRecord  # answered on PolarGrid


async def _dial(bridge: LocalBridge, to: str, seconds: float, **options: object) -> DialReport:
    async with asyncio.timeout(30):
        report = await dial(
            bridge.url,
            to=to,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            audio=tone_mulaw(seconds),
            tail=0.5,
            **options,  # type: ignore[arg-type]
        )
    assert report.webhook_status == 200, report
    return report


async def place_real_calls(bridge: LocalBridge) -> RealCalls:
    long = asyncio.create_task(
        _dial(bridge, SHAKSHUKA, 2.5, from_="+15005550011", dtmf=[(0.6, "5")])
    )
    await asyncio.sleep(0.6)  # the long call holds the only self-hosted server
    busy, overflow = await asyncio.gather(
        _dial(bridge, SHAKSHUKA, 0.5, from_="+15005550012"),
        _dial(bridge, CITYSAN, 1.0, from_="+15005550013"),
    )
    long_report = await long
    calls = RealCalls(
        long=await record_of(bridge, long_report.call_sid),
        busy=await record_of(bridge, busy.call_sid),
        overflow=await record_of(bridge, overflow.call_sid),
    )
    assert calls.busy.end_reason == "busy"
    assert calls.overflow.provider == "polargrid"
    assert calls.long.provider == "personaplex"
    return calls


DAY = datetime(2025, 3, 10, tzinfo=UTC)


def at(hour: int, minute: int = 0, second: float = 0.0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


@dataclass(frozen=True, slots=True)
class Row:
    started_at: datetime
    end_reason: str
    answered: bool = False
    provider: str = ""
    duration: float = 0.0
    socket: float = 0.0
    first_audio: float | None = None


KNOWN_ROWS: tuple[Row, ...] = (
    Row(at(8, 59, 59), "caller_hangup", True, "personaplex", 10, 9, 0.3),  # before the range
    Row(at(9, 5), "caller_hangup", True, "personaplex", 120, 118, 0.4),
    Row(at(9, 40), "model_ended", True, "polargrid", 60, 61.5, 1.2),
    Row(at(9, 59, 59.9), "busy"),
    Row(at(10), "rate_limited"),  # on the hour: the 10:00 bucket
    Row(at(10, 30), "caller_hangup", True, "personaplex", 30, 29, 0.8),
    Row(at(11, 15), "no_stream", False, "personaplex", 0, 2.0),
    Row(at(12), "caller_hangup", True, "fal", 20, 19, 0.5),  # `to` is exclusive
)
KNOWN_FROM = "2025-03-10T09:00"
KNOWN_TO = "2025-03-10T12:00"

KNOWN_HOURLY = {
    "from": "2025-03-10T09:00:00Z",
    "to": "2025-03-10T12:00:00Z",
    "totals": {
        "calls": 6,
        "answered": 3,
        "busy": 1,
        "refused": 1,
        "unanswered": 1,
        "minutes": 3.5,
        "model_socket_seconds": 210.5,
        # 0.4, 0.8, 1.2: p95 interpolates 90 % of the way from 0.8 to 1.2
        "first_agent_audio": {"p50": 0.8, "p95": 1.16, "count": 3},
    },
    "buckets": [
        {
            "start": "2025-03-10T09:00:00Z",
            "calls": 3,
            "answered": 2,
            "busy": 1,
            "refused": 0,
            "unanswered": 0,
            "minutes": 3.0,
            "model_socket_seconds": {"personaplex": 118.0, "polargrid": 61.5},
            "first_agent_audio": {"p50": 0.8, "p95": 1.16, "count": 2},
        },
        {
            "start": "2025-03-10T10:00:00Z",
            "calls": 2,
            "answered": 1,
            "busy": 0,
            "refused": 1,
            "unanswered": 0,
            "minutes": 0.5,
            "model_socket_seconds": {"personaplex": 29.0},
            "first_agent_audio": {"p50": 0.8, "p95": 0.8, "count": 1},
        },
        {
            "start": "2025-03-10T11:00:00Z",
            "calls": 1,
            "answered": 0,
            "busy": 0,
            "refused": 0,
            "unanswered": 1,
            "minutes": 0.0,
            "model_socket_seconds": {"personaplex": 2.0},
            "first_agent_audio": {"p50": None, "p95": None, "count": 0},
        },
    ],
    "providers": [
        {"provider": "personaplex", "calls": 3, "model_socket_seconds": 149.0},
        {"provider": "polargrid", "calls": 1, "model_socket_seconds": 61.5},
    ],
    "end_reasons": [
        {"end_reason": "caller_hangup", "calls": 2},
        {"end_reason": "busy", "calls": 1},
        {"end_reason": "model_ended", "calls": 1},
        {"end_reason": "no_stream", "calls": 1},
        {"end_reason": "rate_limited", "calls": 1},
    ],
}


async def insert_known_rows(bridge: LocalBridge) -> None:
    index = await CallIndex.create(bridge.settings.effective_database_url)
    try:
        for number, row in enumerate(KNOWN_ROWS):
            sid = f"CA{number:032x}"
            await index.start_call(
                CallStart(
                    call_sid=sid,
                    started_at=row.started_at,
                    from_number=f"+1500555{number:04d}",
                    to_number=SHAKSHUKA,
                    persona="shakshuka",
                    provider=row.provider,
                    stream_sid=f"MZ{number:032x}" if row.answered else None,
                    status=CallStatus.LIVE if row.answered else CallStatus.PENDING,
                )
            )
            if row.first_audio is not None:
                await index.update(sid, CallUpdate(first_agent_audio_seconds=row.first_audio))
            await index.finish_call(
                sid,
                CallEnd(
                    ended_at=row.started_at + timedelta(seconds=row.duration),
                    end_reason=row.end_reason,
                    ended_by="caller",
                    model_socket_seconds=row.socket,
                ),
            )
    finally:
        await index.close()
