"""``phonebridge simulate personaplex``: run the PersonaPlex simulator (a TEST DOUBLE).

The main CLI calls :func:`register` with its sub-parsers; ``func`` returns an
exit code. The simulator only imitates the providers' wire protocols
(PROTOCOLS.md §2-§4) for demos and tests; it is not a speech model.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

from phonebridge.simulators.personaplex import (
    FLAVOURS,
    REPLY_MODES,
    Flavour,
    PersonaPlexSimulator,
    ReplyMode,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulate personaplex`` to the main CLI."""
    simulate = subparsers.add_parser(
        "simulate", help="run a simulator (test double) of a peer phonebridge talks to"
    )
    peers = simulate.add_subparsers(dest="peer", required=True)
    parser = peers.add_parser(
        "personaplex",
        help="TEST DOUBLE of a PersonaPlex server (self-hosted, PolarGrid or fal protocol)",
        description=(
            "A test double that speaks the PersonaPlex wire protocol (echo, silence or canned "
            "espeak-ng speech). Not a model: for demos and tests only."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8998)
    parser.add_argument("--flavour", choices=FLAVOURS, default="self-hosted")
    parser.add_argument("--reply", choices=REPLY_MODES, default="speech")
    parser.add_argument(
        "--conditioning-delay",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds before the 0x00 handshake (self-hosted, polargrid)",
    )
    parser.add_argument(
        "--api-key", default=None, help="key to accept (polargrid, fal); default: any"
    )
    parser.add_argument(
        "--mode",
        choices=("normal", "rate-limited"),
        default="normal",
        help="rate-limited: refuse every upgrade with 429 and Retry-After",
    )
    parser.add_argument("--retry-after", type=int, default=7, metavar="S")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="fal: send x-fal-error TIMEOUT after this long without input",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    simulator = PersonaPlexSimulator(
        flavour=cast(Flavour, args.flavour),
        reply=cast(ReplyMode, args.reply),
        conditioning_delay=args.conditioning_delay,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        reject_status=429 if args.mode == "rate-limited" else None,
        retry_after=args.retry_after,
        idle_timeout=args.idle_timeout,
    )
    try:
        asyncio.run(_serve(simulator, args))
    except KeyboardInterrupt:
        return 0
    return 0


async def _serve(simulator: PersonaPlexSimulator, args: argparse.Namespace) -> None:
    await simulator.start()
    print(
        f"PersonaPlex simulator (TEST DOUBLE, {args.flavour}, reply={args.reply}) "
        f"on {simulator.url}",
        flush=True,
    )
    try:
        await asyncio.Future()  # until Ctrl-C
    finally:
        await simulator.stop()
