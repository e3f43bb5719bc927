"""``phonebridge dial``: call a bridge the way Twilio would (a test double).

The auth token that signs the requests comes from ``TWILIO_AUTH_TOKEN``; with
``--dev-token`` and no such variable, the public development token
:data:`~phonebridge.simulators.phone.dial.DEV_AUTH_TOKEN` is used (a bridge
started for local development must use the same one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from phonebridge.simulators.phone.dial import DEV_AUTH_TOKEN, dial


def _gap(text: str) -> tuple[float, float]:
    start, sep, duration = text.partition(":")
    try:
        if not sep:
            raise ValueError(text)
        return float(start), float(duration)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--gap wants START:DURATION seconds, got {text!r}"
        ) from None


def _dtmf(text: str) -> tuple[float, str]:
    at, sep, digits = text.partition(":")
    try:
        if not sep or not digits or any(d not in "0123456789*#ABCDw" for d in digits):
            raise ValueError(text)
        return float(at), digits
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--dtmf wants TIME:DIGITS (0-9*#), got {text!r}"
        ) from None


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dial",
        help="call a bridge as Twilio would (phone simulator)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="where the bridge listens, e.g. http://127.0.0.1:8080")
    parser.add_argument("--to", required=True, help="the dialled number (E.164)")
    parser.add_argument("--from", dest="from_", default="+15005550006", help="the caller's number")
    parser.add_argument("--audio", type=Path, help="caller WAV: 16-bit mono, 8 or 24 kHz")
    parser.add_argument("--out", type=Path, help="write what the caller heard (8 kHz WAV)")
    parser.add_argument("--fast", action="store_true", help="send the caller's audio unpaced")
    parser.add_argument(
        "--gap",
        type=_gap,
        action="append",
        default=[],
        metavar="START:DUR",
        help="no media at all for DUR seconds from START (repeatable)",
    )
    parser.add_argument(
        "--dtmf",
        type=_dtmf,
        action="append",
        default=[],
        metavar="T:DIGITS",
        help="press DIGITS at T seconds (repeatable)",
    )
    parser.add_argument("--hangup-after", type=float, metavar="S", help="hang up after S seconds")
    parser.add_argument(
        "--tail",
        type=float,
        default=2.0,
        metavar="S",
        help="without --hangup-after: stay S seconds after the recording (default 2)",
    )
    parser.add_argument("--no-stop", action="store_true", help="drop the socket without 'stop'")
    parser.add_argument(
        "--public-url", help="the base URL Twilio would be configured with (signed URLs)"
    )
    parser.add_argument(
        "--connect-override",
        metavar="URL",
        help="open the media stream here instead of the TwiML's wss:// URL (signed as written)",
    )
    parser.add_argument(
        "--dev-token",
        action="store_true",
        help=f"without TWILIO_AUTH_TOKEN, sign with the development token {DEV_AUTH_TOKEN!r}",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    token = os.environ.get("TWILIO_AUTH_TOKEN") or (DEV_AUTH_TOKEN if args.dev_token else "")
    if not token:
        print("phonebridge dial: set TWILIO_AUTH_TOKEN (or pass --dev-token)", file=sys.stderr)
        return 2
    report = asyncio.run(
        dial(
            args.url,
            to=args.to,
            from_=args.from_,
            auth_token=token,
            audio=args.audio,
            out=args.out,
            fast=args.fast,
            gaps=args.gap,
            dtmf=args.dtmf,
            hangup_after=args.hangup_after,
            send_stop=not args.no_stop,
            tail=args.tail,
            public_url=args.public_url,
            connect_override=args.connect_override,
        )
    )
    print(report.to_json())
    return 0 if report.ok else 1
