"""A whole phonebridge on loopback: the real bridge plus PersonaPlex simulators.

Used by ``phonebridge demo`` and by the end-to-end tests. The bridge is the
real one (the same :func:`~phonebridge.service.build_app`, uvicorn, sockets);
only the model servers are simulators (test doubles), one per provider
flavour, so every persona file — self-hosted, PolarGrid and fal overflow
alike — has somewhere to go without keys or a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from phonebridge.config import Settings
from phonebridge.service import build_app
from phonebridge.simulators.personaplex.replies import ReplyMode
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator

DEMO_AUTH_TOKEN = "demo-auth-token-not-a-secret"  # noqa: S105 - loopback simulation only
"""The Twilio auth token the bridge and the phone simulator share on loopback."""

PUBLIC_URL = "https://bridge.phonebridge.invalid"
"""What Twilio would be configured with. The phone simulator signs its requests
for this URL and delivers them to the local one, as a TLS-terminating proxy in
front of the bridge would (``.invalid`` is reserved: it can never resolve)."""

DEMO_POLARGRID_KEY = "pg_simulator_key"
DEMO_FAL_KEY = "fal-simulator-key"


@dataclass(slots=True)
class SimulatorOptions:
    """How the simulated model servers behave."""

    reply: ReplyMode = "speech"
    conditioning_delay: float = 0.5
    self_hosted_servers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    """Fault knobs for the self-hosted simulators (see PersonaPlexSimulator)."""
    polargrid_extra: dict[str, Any] = field(default_factory=dict)
    """Knobs for the PolarGrid simulator (``reject_status``, ``die_after``, ...)."""
    fal_extra: dict[str, Any] = field(default_factory=dict)
    """Knobs for the fal simulator (``reject_status``, ``fal_timeout_after``, ...)."""


@dataclass(slots=True)
class LocalBridge:
    """A running bridge and its simulators."""

    url: str
    """Where the bridge listens (http://127.0.0.1:PORT)."""
    public_url: str
    """What Twilio signs: pass to the phone simulator's ``public_url``."""
    settings: Settings
    app: FastAPI
    self_hosted: list[PersonaPlexSimulator]
    polargrid: PersonaPlexSimulator
    fal: PersonaPlexSimulator


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def local_bridge(
    *,
    personas_dir: Path,
    data_dir: Path,
    simulators: SimulatorOptions | None = None,
    drain_seconds: float = 5.0,
    wall_clock: Callable[[], float] = time.time,
    **settings_overrides: Any,
) -> AsyncIterator[LocalBridge]:
    """Start simulators and the bridge on free loopback ports; stop them on exit."""
    options = simulators or SimulatorOptions()
    async with contextlib.AsyncExitStack() as stack:
        self_hosted = [
            await stack.enter_async_context(
                PersonaPlexSimulator(
                    flavour="self-hosted",
                    reply=options.reply,
                    conditioning_delay=options.conditioning_delay,
                    **options.extra,
                )
            )
            for _ in range(options.self_hosted_servers)
        ]
        polargrid = await stack.enter_async_context(
            PersonaPlexSimulator(
                flavour="polargrid",
                reply=options.reply,
                conditioning_delay=options.conditioning_delay,
                api_key=DEMO_POLARGRID_KEY,
                **options.polargrid_extra,
            )
        )
        fal = await stack.enter_async_context(
            PersonaPlexSimulator(
                flavour="fal", reply=options.reply, api_key=DEMO_FAL_KEY, **options.fal_extra
            )
        )
        sock = _bound_socket()
        stack.callback(sock.close)
        port = sock.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        values: dict[str, Any] = {
            "public_url": PUBLIC_URL,
            "twilio_auth_token": DEMO_AUTH_TOKEN,
            "personas_dir": personas_dir,
            "data_dir": data_dir,
            "personaplex_urls": tuple(sim.url for sim in self_hosted),
            "polargrid_api_key": DEMO_POLARGRID_KEY,
            "fal_key": DEMO_FAL_KEY,
            # The hosted providers' endpoints are settings (POLARGRID_BASE_URL,
            # FAL_BASE_URL): ws:// is accepted because the simulators are on loopback.
            "polargrid_base_url": polargrid.url,
            "fal_base_url": fal.url,
            "host": "127.0.0.1",
            "port": port,
        }
        values.update(settings_overrides)
        # A provider switched off (its key overridden to None) takes its endpoint along.
        for key, base_url in (
            ("polargrid_api_key", "polargrid_base_url"),
            ("fal_key", "fal_base_url"),
        ):
            if values.get(key) is None and base_url not in settings_overrides:
                values[base_url] = None
        # An empty environment: the demo and the tests run on embedded defaults,
        # whatever the developer's shell exports.
        settings = Settings.from_env({}, **values)
        app = await build_app(settings, drain_seconds=drain_seconds, wall_clock=wall_clock)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                ws_ping_interval=None,
                ws_max_size=1 << 16,
                ws_per_message_deflate=False,
                lifespan="on",
                timeout_graceful_shutdown=int(drain_seconds) + 5,
            )
        )
        # uvicorn takes over SIGINT/SIGTERM in serve(); in-process the owner
        # (the demo, a test) keeps them.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    await task  # re-raise why it could not start
                    raise RuntimeError("the bridge stopped while starting")
                await asyncio.sleep(0.01)
            yield LocalBridge(base, PUBLIC_URL, settings, app, self_hosted, polargrid, fal)
        finally:
            server.should_exit = True
            await task
