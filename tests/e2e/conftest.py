"""End-to-end fixtures: the real bridge on loopback, PersonaPlex simulators, the phone simulator."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.local import LocalBridge, SimulatorOptions, local_bridge

REPO = Path(__file__).resolve().parents[2]

BridgeFactory = Callable[..., AbstractAsyncContextManager[LocalBridge]]


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    """A copy of the shipped personas that a test may edit."""
    target = tmp_path / "personas"
    shutil.copytree(REPO / "personas", target)
    return target


@pytest.fixture
def start_bridge(personas_dir: Path, tmp_path: Path) -> BridgeFactory:
    """``async with start_bridge(**settings) as bridge:`` with fast simulators."""

    def factory(
        simulators: SimulatorOptions | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[LocalBridge]:
        return local_bridge(
            personas_dir=personas_dir,
            data_dir=tmp_path / "data",
            simulators=simulators or SimulatorOptions(reply="echo", conditioning_delay=0.05),
            **overrides,
        )

    return factory


def tone_mulaw(seconds: float, freq: float = 440.0, level: float = 0.3) -> bytes:
    """A sine tone as 8 kHz mu-law bytes: a caller who is saying something."""
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (np.sin(2 * np.pi * freq * t) * level * 32767).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


@pytest.fixture
async def bridge(start_bridge: BridgeFactory) -> AsyncIterator[LocalBridge]:
    async with start_bridge() as running:
        yield running
