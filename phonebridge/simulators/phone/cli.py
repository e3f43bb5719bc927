"""``phonebridge dial``: call a bridge the way Twilio would (a test double).

The auth token that signs the requests comes from ``TWILIO_AUTH_TOKEN``; with
``--dev-token`` and no such variable, the public development token
:data:`~phonebridge.simulators.phone.dial.DEV_AUTH_TOKEN` is used (a bridge
started for local development must use the same one).

``--carrier telnyx|plivo|vonage|signalwire|exotel`` calls as that carrier
instead (:mod:`phonebridge.simulators.phone.carriers`), signing with the same
settings the bridge verifies with (``PLIVO_AUTH_TOKEN``,
``VONAGE_SIGNATURE_SECRET``, ``SIGNALWIRE_SIGNING_KEY``, ``EXOTEL_BASIC_USER``/
``_PASSWORD`` …). Telnyx signs with a *private* key the bridge never has:
``--telnyx-private-key FILE`` (base64 of the 32-byte seed), or with
``--dev-token`` the public development key pair, whose public half is printed
for ``TELNYX_PUBLIC_KEY``. ``--api-port`` runs the fake carrier REST API (a
test double; Telnyx answers calls through it) on 127.0.0.1 at that port: point
``TELNYX_API_URL``/``PLIVO_API_URL``/``VONAGE_API_URL``/``SIGNALWIRE_SPACE_URL``
at it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from phonebridge.config import carrier_settings_from_env
from phonebridge.errors import ConfigError
from phonebridge.simulators.phone.carriers import (
    CARRIERS,
    CarrierSecrets,
    FakeCarrierApi,
    dev_telnyx_key,
    dial_carrier,
)
from phonebridge.simulators.phone.dial import DEV_AUTH_TOKEN, dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.telnyx.signature import public_key_text


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
        help=f"without TWILIO_AUTH_TOKEN, sign with the development token {DEV_AUTH_TOKEN!r}"
        " (Telnyx: the development key pair)",
    )
    parser.add_argument(
        "--carrier",
        choices=("twilio", *CARRIERS),
        default="twilio",
        help="call as this carrier (default twilio)",
    )
    parser.add_argument(
        "--rate",
        type=int,
        choices=(8000, 16000, 24000),
        default=16000,
        help="carriers: the caller's leg (8000 = PSTN, 16000 = wideband; default 16000)",
    )
    parser.add_argument("--telnyx-private-key", type=Path, metavar="FILE", help="base64 seed")
    parser.add_argument(
        "--api-port", type=int, metavar="PORT", help="run the fake carrier REST API on this port"
    )
    parser.add_argument(
        "--camel", action="store_true", help="exotel: camelCase keys (Exotel's own samples)"
    )
    parser.set_defaults(func=run)


def _telnyx_key(args: argparse.Namespace) -> Ed25519PrivateKey | None:
    if args.telnyx_private_key is not None:
        seed = base64.b64decode(args.telnyx_private_key.read_text().strip(), validate=True)
        return Ed25519PrivateKey.from_private_bytes(seed)
    if args.dev_token:
        key = dev_telnyx_key()
        print(f"TELNYX_PUBLIC_KEY={public_key_text(key)} (development key)", file=sys.stderr)
        return key
    return None


def carrier_secrets(args: argparse.Namespace) -> CarrierSecrets:
    c = carrier_settings_from_env()

    def reveal(value: SecretStr | None) -> str:
        return value.get_secret_value() if value is not None else ""

    return CarrierSecrets(
        telnyx_private_key=_telnyx_key(args),
        telnyx_api_key=reveal(c.telnyx_api_key),
        plivo_auth_id=c.plivo_auth_id or "",
        plivo_auth_token=reveal(c.plivo_auth_token),
        vonage_signature_secret=reveal(c.vonage_signature_secret),
        vonage_api_key=c.vonage_api_key or "",
        signalwire_signing_key=reveal(c.signalwire_signing_key),
        signalwire_project_id=c.signalwire_project_id or "",
        signalwire_api_token=reveal(c.signalwire_api_token),
        exotel_basic_user=c.exotel_basic_user or "",
        exotel_basic_password=reveal(c.exotel_basic_password),
    )


async def _dial_carrier(args: argparse.Namespace, secrets: CarrierSecrets) -> DialReport:
    api = FakeCarrierApi(secrets.api_credentials())
    if args.api_port is not None:
        await api.start(args.api_port)
    try:
        return await dial_carrier(
            args.carrier,
            args.url,
            to=args.to,
            secrets=secrets,
            api=api if args.api_port is not None else None,
            from_=args.from_,
            rate=args.rate,
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
            camel=args.camel,
        )
    finally:
        await api.stop()


def run(args: argparse.Namespace) -> int:
    if args.carrier != "twilio":
        try:
            report = asyncio.run(_dial_carrier(args, carrier_secrets(args)))
        except (ConfigError, ValueError, OSError) as exc:
            print(f"phonebridge dial --carrier {args.carrier}: {exc}", file=sys.stderr)
            return 2
        print(report.to_json())
        return 0 if report.ok else 1
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
