"""``phonebridge serve``: run the bridge with settings from the environment and flags."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from phonebridge.config import Settings, SettingsError
from phonebridge.errors import ConfigError
from phonebridge.service import build_app


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


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"phonebridge: cannot start:\n{exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings, drain_seconds=args.drain_seconds))
    except ConfigError as exc:
        print(f"phonebridge: cannot start:\n{exc}", file=sys.stderr)
        return 2
    return 0


async def serve(
    settings: Settings, *, drain_seconds: float, sock: socket.socket | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn's shutdown runs the app's drain."""
    app = await build_app(settings, drain_seconds=drain_seconds)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # logging is configured by the CLI, not by uvicorn
        ws_ping_interval=None,  # Twilio does not need pings; keep frames for audio
        ws_max_size=1 << 16,
        timeout_graceful_shutdown=int(drain_seconds) + 10,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    with contextlib.ExitStack():
        await server.serve(sockets=[sock] if sock is not None else None)
