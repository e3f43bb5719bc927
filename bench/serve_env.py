"""The environment of a `phonebridge serve` a bench starts: shared by the load and soak benches."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_env(
    *, personas: Path, data: Path, port: int, self_hosted: Sequence[str], **settings: str
) -> dict[str, str]:
    """This process's environment minus any phonebridge/Twilio settings, plus the bench's.

    ``settings`` are further variables (``PHONEBRIDGE_MAX_CALLS="60"``, ...).
    """
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("PHONEBRIDGE_", "TWILIO_"))
    }
    return {
        **inherited,
        "PHONEBRIDGE_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": DEMO_AUTH_TOKEN,
        "PERSONAPLEX_URLS": ",".join(self_hosted),
        "PHONEBRIDGE_PERSONAS": str(personas),
        "PHONEBRIDGE_DATA": str(data),
        "PHONEBRIDGE_PORT": str(port),
        **settings,
    }
