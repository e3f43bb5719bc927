"""Toll-fraud guard end to end: over the limit, the caller hears busy and nothing is opened.

Phone simulator -> real bridge -> PersonaPlex simulators on loopback. A refused
call must open no model socket on any simulator (hosted providers bill every
second one is open), take no lease, leave a ``rate_limited`` call row and a
metric, and log the caller masked; other callers keep getting through.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge
from phonebridge.personas.loader import load_personas
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport

from .conftest import BridgeFactory, record_of, tone_mulaw
from .leaks import assert_no_leaks, baseline, bridge_of

CITYSAN = "+14165550101"  # personaplex, overflow polargrid
ALICE = "+15005550111"
BOB = "+15005550222"


async def call(bridge: LocalBridge, from_: str, **options: object) -> DialReport:
    options.setdefault("audio", tone_mulaw(0.3))
    options.setdefault("tail", 0.2)
    async with asyncio.timeout(30):
        return await dial(
            bridge.url,
            to=CITYSAN,
            from_=from_,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            **options,  # type: ignore[arg-type]
        )


async def answered_call(bridge: LocalBridge, from_: str, **options: object) -> DialReport:
    """A call that reached the model, once its teardown has finished (lease back)."""
    report = await call(bridge, from_, **options)
    assert report.frames_received > 0, report
    assert (await record_of(bridge, report.call_sid)).end_reason == "caller_hangup"
    return report


def model_connections(bridge: LocalBridge) -> int:
    return sum(len(sim.connections) for sim in (*bridge.self_hosted, bridge.polargrid, bridge.fal))


def busy_message(bridge: LocalBridge) -> str:
    persona = load_personas(bridge.settings.personas_dir).by_id("citysan")
    assert persona is not None
    return persona.busy_message


async def metrics_text(bridge: LocalBridge) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(bridge.url + "/metrics")
    assert response.status_code == 200
    return response.text


async def assert_refused(bridge: LocalBridge, report: DialReport) -> None:
    """Busy message, no stream, and a call row that says why."""
    assert report.twiml_verbs == ["Say", "Hangup"]
    assert report.said == [busy_message(bridge)]
    assert report.stream_url is None
    record = await record_of(bridge, report.call_sid)
    assert record.end_reason == "rate_limited"
    assert record.ended_by == "bridge"
    assert not record.provider  # no model was ever asked


async def test_the_call_over_the_hourly_limit_hears_busy_and_opens_nothing(
    start_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_bridge(caller_max_calls_per_hour=2) as bridge:
        before = baseline(bridge)
        for _ in range(2):
            await answered_call(bridge, ALICE)
        opened = model_connections(bridge)
        assert opened == 2
        with caplog.at_level(logging.WARNING, logger="phonebridge.calls.bridge"):
            third = await call(bridge, ALICE)
        await assert_refused(bridge, third)
        assert model_connections(bridge) == opened  # no model socket for the refused call
        assert bridge_of(bridge).admission.active_calls == 0
        # Logged with the reason, the caller's number masked to its last four digits.
        refusals = [r.getMessage() for r in caplog.records if "toll-fraud" in r.getMessage()]
        assert len(refusals) == 1
        assert "caller_rate" in refusals[0]
        assert "0111" in refusals[0]
        assert ALICE not in refusals[0]
        assert "5005550" not in refusals[0]
        # Another caller still gets through.
        await answered_call(bridge, BOB)
        assert model_connections(bridge) == opened + 1
        text = await metrics_text(bridge)
        assert 'phonebridge_calls_total{end_reason="rate_limited",outcome="busy"} 1.0' in text
        assert 'phonebridge_calls_refused_total{limit="caller_rate"} 1.0' in text
        await assert_no_leaks(bridge, before)


async def test_a_second_concurrent_call_from_one_caller_is_refused_until_the_first_ends(
    start_bridge: BridgeFactory,
) -> None:
    async with start_bridge(caller_max_concurrent=1) as bridge:
        first = asyncio.create_task(call(bridge, ALICE, audio=tone_mulaw(2.0)))
        async with asyncio.timeout(10):
            # Its model socket is open: the call holds a slot (pending or live).
            await bridge.self_hosted[0].wait_for_connections(1)
        opened = model_connections(bridge)
        second = await call(bridge, ALICE)
        await assert_refused(bridge, second)
        assert model_connections(bridge) == opened
        # Another caller at the same time is fine (self-hosted busy: PolarGrid overflow).
        other = await answered_call(bridge, BOB)
        assert (await record_of(bridge, other.call_sid)).provider == "polargrid"
        assert (await first).frames_received > 0
        await record_of(bridge, (await first).call_sid)
        await assert_no_leaks(bridge)
        # Only now: overlapping calls grew the database pool (kept, not leaked).
        before = baseline(bridge)
        # The first call's slot is back, so the caller may call again.
        await answered_call(bridge, ALICE)
        assert 'limit="caller_concurrent"} 1.0' in await metrics_text(bridge)
        await assert_no_leaks(bridge, before)


async def test_the_instance_wide_rate_limit_refuses_new_callers_too(
    start_bridge: BridgeFactory,
) -> None:
    async with start_bridge(max_new_calls_per_minute=2, caller_max_calls_per_hour=0) as bridge:
        before = baseline(bridge)
        await answered_call(bridge, ALICE)
        await answered_call(bridge, BOB)
        opened = model_connections(bridge)
        third = await call(bridge, "+15005550333")
        await assert_refused(bridge, third)
        assert model_connections(bridge) == opened
        assert 'limit="global_rate"} 1.0' in await metrics_text(bridge)
        await assert_no_leaks(bridge, before)


async def test_withheld_numbers_share_one_bucket(start_bridge: BridgeFactory) -> None:
    async with start_bridge(caller_max_calls_per_hour=1) as bridge:
        before = baseline(bridge)
        await answered_call(bridge, "anonymous")
        opened = model_connections(bridge)
        # Twilio's keypad spelling of ANONYMOUS is the same caller.
        again = await call(bridge, "+266696687")
        await assert_refused(bridge, again)
        assert model_connections(bridge) == opened
        await assert_no_leaks(bridge, before)
