"""End-to-end fixtures: a real `phonebridge serve` subprocess (the in-process bridge,
``start_bridge``/``bridge``, and the helpers come from tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallRecord

from ..conftest import REPO, BridgeFactory, record_of, tone_mulaw
from ..realservers.ports import free_port

# The shared helpers, re-exported for the e2e tests' `from .conftest import ...`.
__all__ = ["REPO", "BridgeFactory", "ServeProcess", "record_of", "serve_process", "tone_mulaw"]


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
    port = free_port()  # the subprocess binds it: from this worker's own slice
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
