"""End-to-end fixtures: the real bridge on loopback, PersonaPlex simulators, the phone simulator."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.local import (
    DEMO_AUTH_TOKEN,
    PUBLIC_URL,
    LocalBridge,
    SimulatorOptions,
    local_bridge,
)
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallRecord

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


@dataclass(frozen=True, slots=True)
class ServeProcess:
    """How to run a real `phonebridge serve` subprocess against one simulator."""

    env: dict[str, str]
    port: int
    data: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        """Start it and wait until it answers /healthz."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "phonebridge.cli", "serve", *args, env=self.env
        )
        async with httpx.AsyncClient() as http, asyncio.timeout(30):
            while True:
                try:
                    if (await http.get(self.url + "/healthz")).status_code == 200:
                        return process
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)

    async def record(self, call_sid: str) -> CallRecord | None:
        index = await CallIndex.create(f"sqlite+aiosqlite:///{self.data / 'phonebridge.db'}")
        try:
            return await index.get(call_sid)
        finally:
            await index.close()


def serve_process(tmp_path: Path, model_url: str) -> ServeProcess:
    """Environment for `phonebridge serve` on a free port, the shipped personas, one server."""
    personas = tmp_path / "personas-serve"
    shutil.copytree(REPO / "personas", personas)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("PHONEBRIDGE_", "TWILIO_"))
    }
    env = {
        **inherited,
        "PHONEBRIDGE_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": DEMO_AUTH_TOKEN,
        "PERSONAPLEX_URLS": model_url,
        "POLARGRID_API_KEY": "pg_unused",
        "FAL_KEY": "fal-unused",
        "PHONEBRIDGE_PERSONAS": str(personas),
        "PHONEBRIDGE_DATA": str(tmp_path / "data"),
        "PHONEBRIDGE_PORT": str(port),
    }
    return ServeProcess(env, port, tmp_path / "data")
