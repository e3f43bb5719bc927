"""What every part of the settings shares: the error, the two choices, paths and URL rules."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path

from phonebridge.errors import ConfigError

DEFAULT_PERSONAS_DIR = Path("personas")
DEFAULT_DATA_DIR = Path("data")
TWILIO_PREFIX = "/twilio"
REPLICA_PREFIX = TWILIO_PREFIX + "/r"

HOST_PATTERN = re.compile(r"[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+")  # a name, IPv4 or IPv6
PATH_PATTERN = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")  # RFC 3986 pchar and "/"


class SettingsError(ConfigError):
    """Settings are missing or inconsistent; ``problems`` says what to set."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "invalid settings:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )


class StreamSignaturePolicy(StrEnum):
    """What to do with the media socket's X-Twilio-Signature (§1.4)."""

    STRICT = "strict"  # reject an upgrade without a valid signature (default)
    LOG = "log"  # accept, but log what arrived (to learn what the real Twilio sends)
    OFF = "off"  # no check; the one-time stream token still binds it to a webhook


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
