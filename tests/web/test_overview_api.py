"""``/api/stats/overview`` against the call rows: real calls through the bridge, known rows."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from phonebridge.local import LocalBridge
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallQuery, CallRecord

from .conftest import TOKEN
from .overview_data import KNOWN_FROM, KNOWN_HOURLY, KNOWN_TO, insert_known_rows, place_real_calls

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def approx_tree(expected: Any) -> Any:
    """``expected`` with every float wrapped in pytest.approx (sums of floats drift)."""
    if isinstance(expected, dict):
        return {key: approx_tree(value) for key, value in expected.items()}
    if isinstance(expected, list):
        return [approx_tree(value) for value in expected]
    if isinstance(expected, float):
        return pytest.approx(expected, abs=1e-9)
    return expected


async def overview(bridge: LocalBridge, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=bridge.url, headers=BEARER, timeout=10) as http:
        return await http.get("/api/stats/overview", params=params)


async def rows_between(bridge: LocalBridge, since: datetime, until: datetime) -> list[CallRecord]:
    index = await CallIndex.create(bridge.settings.effective_database_url)
    try:
        query = CallQuery(since=since, until=until, limit=CallQuery.MAX_LIMIT)
        return (await index.list_calls(query)).items
    finally:
        await index.close()


def expected_from_rows(rows: list[CallRecord]) -> dict[str, Any]:
    """The overview's totals worked out from the rows, independently of storage/stats.py."""
    kinds: Counter[str] = Counter()
    for row in rows:
        if row.end_reason == "busy":
            kinds["busy"] += 1
        elif row.end_reason == "rate_limited":
            kinds["refused"] += 1
        elif row.stream_sid is not None:
            kinds["answered"] += 1
        else:
            kinds["unanswered"] += 1
    socket: defaultdict[str, float] = defaultdict(float)
    for row in rows:
        if row.provider:
            socket[row.provider] += row.model_socket_seconds or 0.0
    first = [r.first_agent_audio_seconds for r in rows if r.first_agent_audio_seconds is not None]
    return {
        "calls": len(rows),
        **{kind: kinds[kind] for kind in ("answered", "busy", "refused", "unanswered")},
        "minutes": sum(r.duration_seconds or 0.0 for r in rows) / 60,
        "model_socket_seconds": sum(socket.values()),
        "first_agent_audio": {
            "p50": float(np.percentile(first, 50)),
            "p95": float(np.percentile(first, 95)),
            "count": len(first),
        },
        "socket_by_provider": dict(socket),
        "end_reasons": Counter(r.end_reason for r in rows),
    }


async def test_figures_match_the_rows_of_real_calls(bridge: LocalBridge) -> None:
    calls = await place_real_calls(bridge)
    # the journal stored when the caller first heard the agent, inside the call
    for record in (calls.long, calls.overflow):
        assert record.first_agent_audio_seconds is not None
        assert 0 < record.first_agent_audio_seconds < (record.duration_seconds or 0)
    assert calls.busy.first_agent_audio_seconds is None

    now = datetime.now(UTC)
    response = await overview(
        bridge,
        **{
            "from": (now - timedelta(hours=2)).isoformat(),
            "to": (now + timedelta(hours=1)).isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    data = response.json()
    start = datetime.fromisoformat(data["from"])
    end = datetime.fromisoformat(data["to"])
    rows = await rows_between(bridge, start, end)
    assert len(rows) == 3
    expected = expected_from_rows(rows)
    totals = data["totals"]
    for key in ("calls", "answered", "busy", "refused", "unanswered"):
        assert totals[key] == expected[key], key
    assert (totals["answered"], totals["busy"]) == (2, 1)
    assert totals["minutes"] == pytest.approx(expected["minutes"])
    assert totals["model_socket_seconds"] == pytest.approx(expected["model_socket_seconds"])
    assert totals["first_agent_audio"] == approx_tree(expected["first_agent_audio"])
    providers = {p["provider"]: p["model_socket_seconds"] for p in data["providers"]}
    assert providers == approx_tree(expected["socket_by_provider"])
    assert set(providers) == {"personaplex", "polargrid"}
    reasons = {r["end_reason"]: r["calls"] for r in data["end_reasons"]}
    assert reasons == dict(expected["end_reasons"])
    # whole hourly buckets covering the range asked for, adding up to the totals
    assert start.minute == start.second == 0
    assert start.tzinfo is not None
    assert start <= now - timedelta(hours=2) < start + timedelta(hours=1)
    assert end - timedelta(hours=1) < now + timedelta(hours=1) <= end
    assert len(data["buckets"]) == (end - start) / timedelta(hours=1)
    assert sum(b["calls"] for b in data["buckets"]) == totals["calls"]
    assert sum(b["minutes"] for b in data["buckets"]) == pytest.approx(totals["minutes"])
    by_hour = Counter(
        row.started_at.replace(minute=0, second=0, microsecond=0).isoformat() for row in rows
    )
    for bucket in data["buckets"]:
        hour = datetime.fromisoformat(bucket["start"]).isoformat()
        assert bucket["calls"] == by_hour.get(hour, 0)


async def test_known_rows_by_hour_and_day(bridge: LocalBridge) -> None:
    await insert_known_rows(bridge)
    hourly = await overview(bridge, **{"from": KNOWN_FROM, "to": KNOWN_TO, "bucket": "hour"})
    assert hourly.status_code == 200, hourly.text
    body = hourly.json()
    assert body["bucket"] == "hour"
    assert body["bucket_seconds"] == 3600
    assert {k: body[k] for k in KNOWN_HOURLY} == approx_tree(KNOWN_HOURLY)

    # a range inside hours is widened to them; the same figures come back
    widened = await overview(
        bridge, **{"from": "2025-03-10T09:20:00Z", "to": "2025-03-10T11:01", "bucket": "hour"}
    )
    assert {k: widened.json()[k] for k in KNOWN_HOURLY} == approx_tree(KNOWN_HOURLY)

    # a whole day: the two rows outside the hours are in it too
    daily = await overview(bridge, **{"from": "2025-03-10", "to": "2025-03-10", "bucket": "day"})
    day = daily.json()
    assert (day["from"], day["to"]) == ("2025-03-10T00:00:00Z", "2025-03-11T00:00:00Z")
    assert [b["calls"] for b in day["buckets"]] == [8]
    assert day["totals"]["answered"] == 5
    assert day["totals"]["minutes"] == pytest.approx(3.5 + 30 / 60)
    assert {p["provider"]: p["calls"] for p in day["providers"]} == {
        "personaplex": 4,
        "polargrid": 1,
        "fal": 1,
    }
    # 0.3 0.4 0.5 0.8 1.2
    assert day["totals"]["first_agent_audio"] == approx_tree({"p50": 0.5, "p95": 1.12, "count": 5})

    # an empty range: zeros, and no percentiles rather than made-up ones
    empty = await overview(bridge, **{"from": "2024-01-01", "to": "2024-01-02", "bucket": "day"})
    assert empty.json()["totals"] == {
        "calls": 0,
        "answered": 0,
        "busy": 0,
        "refused": 0,
        "unanswered": 0,
        "minutes": 0.0,
        "model_socket_seconds": 0.0,
        "first_agent_audio": {"p50": None, "p95": None, "count": 0},
    }
    assert len(empty.json()["buckets"]) == 2


async def test_bad_ranges_get_a_sentence_and_no_figures(bridge: LocalBridge) -> None:
    cases = {
        ("2025-03-10T12:00", "2025-03-10T09:00", "hour"): "ends before it starts",
        ("2020-01-01", "2025-01-01", "hour"): "too many to draw",
        ("yesterday", "2025-01-01", "hour"): "not an ISO date",
    }
    for (since, until, bucket), words in cases.items():
        response = await overview(bridge, **{"from": since, "to": until, "bucket": bucket})
        assert response.status_code == 422, (since, until)
        assert words in str(response.json()["detail"])
    wrong_bucket = await overview(bridge, bucket="minute")
    assert wrong_bucket.status_code == 422


async def test_without_credentials_nothing_is_told(bridge: LocalBridge) -> None:
    await insert_known_rows(bridge)
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            for url in (f"/api/stats/overview?from={KNOWN_FROM}&to={KNOWN_TO}", "/overview"):
                response = await http.get(url, headers=headers)
                assert response.status_code == 401, url
                assert "caller_hangup" not in response.text
                assert "personaplex" not in response.text


async def test_an_unreadable_index_is_503_not_a_traceback(bridge: LocalBridge) -> None:
    index = await CallIndex.create(bridge.settings.effective_database_url)
    try:
        async with index.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE calls RENAME TO calls_elsewhere"))
    finally:
        await index.close()
    response = await overview(bridge, bucket="day")
    assert response.status_code == 503
    assert response.json() == {"detail": "call index unavailable"}
