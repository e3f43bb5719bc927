"""Shared by every test that runs the real bridge on loopback.

Fixtures here are visible in every test directory; the helpers are imported
with ``from ..conftest import ...``. A directory chooses how the simulated
models answer by overriding :func:`simulator_options`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.local import LocalBridge, SimulatorOptions, local_bridge
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallRecord

REPO = Path(__file__).resolve().parents[1]

# Property tests draw fresh examples on every run, so a developer's runs keep
# exploring (and a failure is saved in .hypothesis/ and replayed first). CI
# runs the "ci" profile: the same examples every time, so a submission passes
# or fails on its code, not on the luck of the draw. New ground is covered by
# `make fuzz`, which runs the fuzzers with many more random examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("PHONEBRIDGE_HYPOTHESIS_PROFILE", "default"))

BridgeFactory = Callable[..., AbstractAsyncContextManager[LocalBridge]]

# `make test` runs the suite on two pytest-xdist workers (one per core of a CI
# machine), except the tests that start a whole fleet of processes (a
# three-replica cluster behind Caddy with its PostgreSQL, Redis and S3; the load
# and soak benches' servers and call generators): they run afterwards, alone and
# one at a time (`pytest -m xdist_group`). Next to anything else they starve
# their own short liveness deadlines (2 s lease TTL, 0.25 s Redis timeout): a
# rolling restart failed that way under two workers. A module opts in with
# ``pytestmark = HEAVY``; `--dist loadgroup` would keep them on one worker too.
HEAVY = pytest.mark.xdist_group("heavy")


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    """A copy of the shipped personas that a test may edit."""
    target = tmp_path / "personas"
    shutil.copytree(REPO / "personas", target)
    return target


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    """Echoing simulators with a short conditioning delay (override per directory)."""
    return SimulatorOptions(reply="echo", conditioning_delay=0.05)


@pytest.fixture
def start_bridge(
    personas_dir: Path, tmp_path: Path, simulator_options: SimulatorOptions
) -> BridgeFactory:
    """``async with start_bridge(**settings) as bridge:``; ``simulators=`` to change them."""

    def factory(
        simulators: SimulatorOptions | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[LocalBridge]:
        return local_bridge(
            personas_dir=personas_dir,
            data_dir=tmp_path / "data",
            simulators=simulators or simulator_options,
            **overrides,
        )

    return factory


@pytest.fixture
async def bridge(start_bridge: BridgeFactory) -> AsyncIterator[LocalBridge]:
    async with start_bridge() as running:
        yield running


def tone_mulaw(seconds: float, freq: float = 440.0, level: float = 0.3) -> bytes:
    """A sine tone as 8 kHz mu-law bytes: a caller who is saying something."""
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (np.sin(2 * np.pi * freq * t) * level * 32767).astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm)


async def record_of(bridge: LocalBridge, call_sid: str) -> CallRecord:
    """The call row, once the bridge's teardown has completed it."""
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
