"""Fixtures for the history API and dashboard: a real bridge on loopback, real simulated calls."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions, local_bridge
from phonebridge.simulators.phone.dial import dial
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallRecord

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dashboard-test-token"
CITYSAN = "+14165550101"
SHAKSHUKA = "+14165550102"

BridgeFactory = Callable[..., AbstractAsyncContextManager[LocalBridge]]


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    target = tmp_path / "personas"
    shutil.copytree(REPO / "personas", target)
    return target


@pytest.fixture
def start_bridge(personas_dir: Path, tmp_path: Path) -> BridgeFactory:
    """``async with start_bridge(**settings)``: speaking simulators, fast conditioning."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[LocalBridge]:
        return local_bridge(
            personas_dir=personas_dir,
            data_dir=tmp_path / "data",
            simulators=SimulatorOptions(reply="speech", conditioning_delay=0.05),
            **overrides,
        )

    return factory


@pytest.fixture
async def bridge(start_bridge: BridgeFactory) -> AsyncIterator[LocalBridge]:
    async with start_bridge(dashboard_token=TOKEN) as running:
        yield running


def tone_mulaw(seconds: float, freq: float = 440.0, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (np.sin(2 * np.pi * freq * t) * level * 32767).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


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
    index = await CallIndex.create(bridge.settings.effective_database_url)
    try:
        async with asyncio.timeout(10):
            while True:
                record = await index.get(report.call_sid)
                if record is not None and record.ended_at is not None:
                    return record
                await asyncio.sleep(0.02)
    finally:
        await index.close()
