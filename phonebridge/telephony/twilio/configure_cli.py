"""``phonebridge twilio configure``: point a Twilio number's voice webhook at the bridge.

Sets the number's voice URL to ``<PHONEBRIDGE_PUBLIC_URL>/twilio/voice`` with
method POST (PROTOCOLS.md §1.1, §1.5), using the same settings the bridge
serves with, so the URL Twilio calls is exactly the one the bridge checks
signatures against (§1.4). Credentials come from ``TWILIO_ACCOUNT_SID`` and
``TWILIO_AUTH_TOKEN`` through :mod:`phonebridge.config`; nothing here reads
the environment itself.

It also sets the number's status callback (``Settings.status_callback_url``):
the plain ``/twilio/call-status`` when coordination is in Redis (any replica
takes it and tells the one holding the call), else this replica's own path.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import sys
from collections.abc import Mapping
from typing import Final, TextIO

from twilio.http import HttpClient

from phonebridge.config import Settings, SettingsError
from phonebridge.telephony.twilio.rest import TwilioApiError, TwilioCallControl

VOICE_WEBHOOK_PATH: Final = "/twilio/voice"

# E.164: "+", a non-zero country digit, at most 15 digits in all. Twilio's
# number lookup matches the exact string, so "(416) 555-0123" would find nothing.
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    environ: Mapping[str, str] | None = None,
    http_client: HttpClient | None = None,
) -> None:
    """Add ``twilio configure``. ``environ`` and ``http_client`` are for tests."""
    parser = subparsers.add_parser(
        "twilio",
        help="manage the Twilio side (point a number at the bridge)",
        description="Manage the Twilio side of the bridge over Twilio's REST API.",
    )
    commands = parser.add_subparsers(dest="twilio_command", metavar="COMMAND", required=True)
    configure = commands.add_parser(
        "configure",
        help="set a number's voice webhook to <public url>/twilio/voice (POST)",
        description=(
            "Set the voice webhook of one of your Twilio numbers to "
            "<public url>/twilio/voice (POST). Needs TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN in the environment."
        ),
    )
    configure.add_argument(
        "--number", required=True, help="the Twilio number, E.164 (e.g. +14165550123)"
    )
    configure.add_argument(
        "--public-url",
        help="https base URL Twilio reaches (default: PHONEBRIDGE_PUBLIC_URL)",
    )
    configure.set_defaults(
        func=functools.partial(run_configure, environ=environ, http_client=http_client)
    )


def run_configure(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    http_client: HttpClient | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Exit status: 0 done, 1 Twilio refused, 2 settings or arguments are wrong."""
    out = out or sys.stdout
    err = err or sys.stderr
    number = args.number.strip()
    if not _E164.fullmatch(number):
        print(
            f"phonebridge twilio configure: {number!r} is not an E.164 number (e.g. +14165550123)",
            file=err,
        )
        return 2
    try:
        settings = Settings.from_env(environ, public_url=args.public_url)
        account_sid, auth_token = _credentials(settings)
    except SettingsError as exc:
        print(f"phonebridge twilio configure: {exc}", file=err)
        return 2
    voice_url = settings.webhook_url(VOICE_WEBHOOK_PATH)
    status_url = settings.status_callback_url
    control = TwilioCallControl(account_sid, auth_token, http_client=http_client)
    try:
        sid = asyncio.run(control.configure_number(number, voice_url, status_url))
    except TwilioApiError as exc:
        print(f"phonebridge twilio configure: {exc}", file=err)
        return 1
    print(
        f"{number} ({sid}) now sends its calls to POST {voice_url} (call status to {status_url})",
        file=out,
    )
    return 0


def _credentials(settings: Settings) -> tuple[str, str]:
    # The bridge itself can run without an account SID (it only verifies
    # webhooks); changing a number needs both.
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    problems = []
    if sid is None:
        problems.append(
            "TWILIO_ACCOUNT_SID is not set: set it to your account SID (Console > Account "
            "> API keys & tokens)"
        )
    if token is None:
        problems.append("TWILIO_AUTH_TOKEN is not set: the REST API needs it")
    if sid is None or token is None:
        raise SettingsError(problems)
    return sid, token.get_secret_value()
