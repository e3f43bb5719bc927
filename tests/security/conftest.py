"""Security tests: the real bridge on loopback with the PersonaPlex simulators."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport

from ..conftest import BridgeFactory, record_of, tone_mulaw

__all__ = ["CITYSAN", "BridgeFactory", "call", "record_of", "tone_mulaw"]

CITYSAN = "+14165550101"  # self-hosted PersonaPlex


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    """Speaking simulators: agent text reaches logs and transcripts to be searched."""
    return SimulatorOptions(reply="speech", conditioning_delay=0.05)


async def call(
    bridge: LocalBridge, to: str = CITYSAN, *, auth_token: str = DEMO_AUTH_TOKEN, **options: Any
) -> DialReport:
    options.setdefault("audio", tone_mulaw(0.6))
    options.setdefault("tail", 0.3)
    async with asyncio.timeout(30):
        return await dial(
            bridge.url, to=to, auth_token=auth_token, public_url=bridge.public_url, **options
        )
