"""The ``phonebridge`` command: serve | demo | dial | simulate | personas | db | call | campaign.

Each part of the package registers its own sub-command (``register(subparsers)``
setting ``func``), so this module only assembles them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from phonebridge import __version__, demo, serve
from phonebridge.outbound import cli as outbound_cli
from phonebridge.personas import cli as personas_cli
from phonebridge.simulators import cli as simulators_cli
from phonebridge.simulators.phone import cli as phone_cli
from phonebridge.storage import db_cli
from phonebridge.telephony import carrier_configure
from phonebridge.telephony.twilio import configure_cli as twilio_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phonebridge",
        description="Put a full-duplex PersonaPlex speech model on a phone number.",
    )
    parser.add_argument("--version", action="version", version=f"phonebridge {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.register(subparsers)
    demo.register(subparsers)
    phone_cli.register(subparsers)
    simulators_cli.register(subparsers)
    personas_cli.register(subparsers)
    twilio_cli.register(subparsers)
    outbound_cli.register(subparsers)
    carrier_configure.register(subparsers)
    db_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
