"""Fixtures for the history API and dashboard: a real bridge on loopback, real simulated calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions
from phonebridge.simulators.phone.dial import dial
from phonebridge.storage.models import CallRecord

from ..conftest import BridgeFactory, record_of, tone_mulaw

__all__ = ["BridgeFactory", "place_call", "record_of", "tone_mulaw"]

TOKEN = "dashboard-test-token"
CITYSAN = "+14165550101"
SHAKSHUKA = "+14165550102"


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    """Speaking simulators: the history has agent text to show."""
    return SimulatorOptions(reply="speech", conditioning_delay=0.05)


@pytest.fixture
async def bridge(start_bridge: BridgeFactory) -> AsyncIterator[LocalBridge]:
    async with start_bridge(dashboard_token=TOKEN) as running:
        yield running


async def place_call(
    bridge: LocalBridge, to: str, *, from_: str = "+15005550006", tail: float = 0.5
) -> CallRecord:
    """One simulated call; returns its row once the bridge has finished it."""
    async with asyncio.timeout(30):
        report = await dial(
            bridge.url,
            to=to,
            from_=from_,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            audio=tone_mulaw(1.0),
            tail=tail,
        )
    assert report.ok, report.protocol_errors
    return await record_of(bridge, report.call_sid)
