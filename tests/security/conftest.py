"""Security tests: the real bridge on loopback with the PersonaPlex simulators."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions, local_bridge
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallRecord

REPO = Path(__file__).resolve().parents[2]
CITYSAN = "+14165550101"  # self-hosted PersonaPlex

BridgeFactory = Callable[..., AbstractAsyncContextManager[LocalBridge]]


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    target = tmp_path / "personas"
    shutil.copytree(REPO / "personas", target)
    return target


@pytest.fixture
def start_bridge(personas_dir: Path, tmp_path: Path) -> BridgeFactory:
    """``async with start_bridge(**settings) as bridge:`` with fast, speaking simulators."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[LocalBridge]:
        return local_bridge(
            personas_dir=personas_dir,
            data_dir=tmp_path / "data",
            simulators=SimulatorOptions(reply="speech", conditioning_delay=0.05),
            **overrides,
        )

    return factory


def tone_mulaw(seconds: float, freq: float = 440.0, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (np.sin(2 * np.pi * freq * t) * level * 32767).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


async def call(
    bridge: LocalBridge, to: str = CITYSAN, *, auth_token: str = DEMO_AUTH_TOKEN, **options: Any
) -> DialReport:
    options.setdefault("audio", tone_mulaw(0.6))
    options.setdefault("tail", 0.3)
    async with asyncio.timeout(30):
        return await dial(
            bridge.url, to=to, auth_token=auth_token, public_url=bridge.public_url, **options
        )


async def record_of(bridge: LocalBridge, call_sid: str) -> CallRecord:
    """The call row once the bridge has finished it."""
    index = await CallIndex.create(bridge.settings.effective_database_url)
    try:
        async with asyncio.timeout(10):
            while True:
                record = await index.get(call_sid)
                if record is not None and record.ended_at is not None:
                    return record
                await asyncio.sleep(0.02)
    finally:
        await index.close()
