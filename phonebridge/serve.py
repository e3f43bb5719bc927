"""``phonebridge serve``: run the bridge with settings from the environment and flags."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from phonebridge.config import Settings, SettingsError
from phonebridge.errors import ConfigError
from phonebridge.logs import configure_logging
from phonebridge.service import build_app
from phonebridge.web.app import AppDeps
from phonebridge.workers import run_workers

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the bridge (Twilio webhook + media streams)",
        description="Run the bridge. Every flag has an environment variable; flags win.",
    )
    parser.add_argument("--host", help="bind address (PHONEBRIDGE_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="bind port (PHONEBRIDGE_PORT, default 8080)")
    parser.add_argument(
        "--public-url", help="https base URL Twilio reaches (PHONEBRIDGE_PUBLIC_URL)"
    )
    parser.add_argument("--personas", type=Path, help="persona directory (PHONEBRIDGE_PERSONAS)")
    parser.add_argument("--data", type=Path, help="data directory (PHONEBRIDGE_DATA)")
    parser.add_argument(
        "--personaplex-urls", help="comma-separated self-hosted servers (PERSONAPLEX_URLS)"
    )
    parser.add_argument("--max-calls", type=int, help="concurrent call cap (PHONEBRIDGE_MAX_CALLS)")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=30.0,
        help="on SIGTERM, how long calls in progress may continue (default 30)",
    )
    parser.add_argument(
        "--withdraw-seconds",
        type=float,
        default=0.0,
        help="on SIGTERM, first fail /readyz for this long while still taking calls, so an"
        " edge proxy with active health checks stops sending webhooks here before the"
        " drain refuses them (default 0; in Kubernetes the preStop sleep does this)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="bridge processes, one per core; worker N listens on --port + N and its"
        " streams come back under /twilio/r/wN/ (see docs/deployment.md)",
    )
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "public_url": args.public_url,
        "personas_dir": args.personas,
        "data_dir": args.data,
        "max_calls": args.max_calls,
    }
    if args.personaplex_urls is not None:
        flags["personaplex_urls"] = tuple(
            url.strip() for url in args.personaplex_urls.split(",") if url.strip()
        )
    return Settings.from_env(os.environ, **flags)


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, for the log filter to mask."""
    secrets = (
        settings.twilio_auth_token,
        settings.polargrid_api_key,
        settings.fal_key,
        settings.dashboard_token,
        settings.transcribe_key,
        settings.webhook_secret,
    )
    return [secret.get_secret_value() for secret in secrets if secret is not None]


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"phonebridge: cannot start:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(
        level=settings.log_level, log_format=settings.log_format, secrets=secret_values(settings)
    )
    if args.workers < 1:
        print("phonebridge: cannot start:\n--workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        try:
            return run_workers(args, settings, args.workers)
        except SettingsError as exc:
            print(f"phonebridge: cannot start:\n{exc}", file=sys.stderr)
            return 2
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(
                serve(
                    settings,
                    drain_seconds=args.drain_seconds,
                    withdraw_seconds=args.withdraw_seconds,
                )
            )
    except ConfigError as exc:
        print(f"phonebridge: cannot start:\n{exc}", file=sys.stderr)
        return 2
    return 0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS), else asyncio's own loop.

    Every frame of every call is a socket read and a socket write on the one
    event loop; uvloop's libuv transports do that work in C. The load
    benchmark (bench/bench_load.py) shows what it buys.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional: no uvloop on Windows
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM/SIGINT drains the bridge before exiting.

    Plain uvicorn closes its listening socket at once and then waits for open
    connections; a webhook retried by Twilio would find nobody there, and
    readiness would never fail first. Draining instead: readiness fails and
    webhooks get the busy answer while calls in progress finish (up to the
    deadline); the rest are ended with their fallback and records written;
    then uvicorn shuts down. A second signal exits at once.

    With ``withdraw_seconds``, readiness fails that long *before* the drain
    starts refusing webhooks: an edge proxy polling /readyz (Caddy's active
    health checks) takes the replica out of rotation in that time, so no
    webhook that reaches it meanwhile is refused (what Kubernetes' preStop
    sleep does for a Service).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        deps: AppDeps,
        drain_seconds: float,
        withdraw_seconds: float = 0.0,
    ) -> None:
        super().__init__(config)
        self._deps = deps
        self._bridge = deps.bridge
        self._drain_seconds = drain_seconds
        self._withdraw_seconds = withdraw_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._drain_task is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        log.info(
            "signal %d: unready for %.1f s, then draining for up to %.0f s",
            sig,
            self._withdraw_seconds,
            self._drain_seconds,
        )
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            self._deps.withdrawn = True
            if self._withdraw_seconds > 0:
                await asyncio.sleep(self._withdraw_seconds)
            await self._bridge.drain(self._drain_seconds)
        finally:
            self.should_exit = True


async def serve(
    settings: Settings,
    *,
    drain_seconds: float,
    withdraw_seconds: float = 0.0,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, draining calls first (see DrainingServer)."""
    app = await build_app(settings, drain_seconds=drain_seconds)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # logging is configured by the CLI, not by uvicorn
        ws_ping_interval=None,  # Twilio does not need pings; keep frames for audio
        ws_max_size=1 << 16,
        # Twilio sends base64 JSON that deflate would shrink by a quarter, at a
        # CPU cost per frame that buys nothing on a data-centre link.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=int(withdraw_seconds + drain_seconds) + 10,
        lifespan="on",
    )
    server = DrainingServer(config, app.state.deps, drain_seconds, withdraw_seconds)
    await server.serve(sockets=[sock] if sock is not None else None)
