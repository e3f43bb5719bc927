"""Reading the environment: typed values, the variables phonebridge knows, single-value readers.

:class:`Reader` collects every problem instead of stopping at the first, so
start-up lists all of them at once. The ``*_from_env`` helpers and
:func:`personas_directory` serve CLI commands that need one value and must
not fail on settings they do not use.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from phonebridge.config.common import DEFAULT_DATA_DIR, DEFAULT_PERSONAS_DIR

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def environ_or_os(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def path_or_none(value: str | None) -> Path | None:
    return None if value is None else Path(value)


class Reader:
    """Reads typed values from the environment, collecting every problem at once."""

    def __init__(self, environ: Mapping[str, str], problems: list[str]) -> None:
        self._env = environ
        self._problems = problems

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> SecretStr | None:
        value = self.text(name)
        return None if value is None else SecretStr(value)

    def flag(self, name: str) -> bool:
        value = (self.text(name) or "0").lower()
        if value in _TRUE:
            return True
        if value not in _FALSE:
            self._problems.append(f"{name} must be 1 or 0 (true/false), not {value!r}")
        return False

    def integer(self, name: str, default: int | None) -> Any:
        value = self.text(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            self._problems.append(f"{name} must be a whole number, not {value!r}")
            return default

    def number(self, name: str, default: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            self._problems.append(f"{name} must be a number of seconds, not {value!r}")
            return default

    def choice(self, name: str, kind: type[StrEnum], default: StrEnum) -> Any:
        value = self.text(name)
        if value is None:
            return default
        try:
            return kind(value.lower())
        except ValueError:
            allowed = " | ".join(member.value for member in kind)
            self._problems.append(f"{name} must be {allowed}, not {value!r}")
            return default

    def url_list(self, name: str) -> tuple[str, ...]:
        return split_list(self.text(name) or "")

    def codes(self, name: str) -> tuple[int, ...]:
        """Country calling codes (``1,44`` or ``+1, +44``)."""
        codes: list[int] = []
        for item in split_list(self.text(name) or ""):
            digits = item.removeprefix("+")
            if not (digits.isascii() and digits.isdigit() and 1 <= len(digits) <= 3):
                self._problems.append(
                    f"{name}: {item!r} is not a country calling code (e.g. 1 or 44)"
                )
                continue
            codes.append(int(digits))
        return tuple(codes)


# -- values read on their own ------------------------------------------------------


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``DATABASE_URL``, else the SQLite file under ``PHONEBRIDGE_DATA``: for ``phonebridge db``,
    which needs no other setting."""
    env = environ_or_os(environ)
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return url
    return sqlite_database_url(Path(env.get("PHONEBRIDGE_DATA", "").strip() or DEFAULT_DATA_DIR))


def sqlite_database_url(data_dir: Path) -> str:
    """The default call index: a SQLite file in the data directory."""
    return f"sqlite+aiosqlite:///{(data_dir / 'phonebridge.db').as_posix()}"


def personas_directory(environ: Mapping[str, str] | None = None) -> Path:
    """``PHONEBRIDGE_PERSONAS`` or ``./personas``: for commands that need no other setting."""
    value = environ_or_os(environ).get("PHONEBRIDGE_PERSONAS", "").strip()
    return Path(value) if value else DEFAULT_PERSONAS_DIR


def dashboard_token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``PHONEBRIDGE_DASHBOARD_TOKEN``, for CLI commands that call the running server's API."""
    value = environ_or_os(environ).get("PHONEBRIDGE_DASHBOARD_TOKEN", "").strip()
    return value or None


# -- unknown variables ---------------------------------------------------------------


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for ``PHONEBRIDGE_*`` variables nobody reads (typos fail silently otherwise)."""
    warnings = []
    for name in sorted(environ_or_os(environ)):
        if name.startswith("PHONEBRIDGE_") and name not in KNOWN_VARIABLES:
            close = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            warnings.append(f"{name} is not a phonebridge setting{hint}")
    return warnings


KNOWN_VARIABLES = frozenset(
    {
        "PHONEBRIDGE_PUBLIC_URL",
        "PHONEBRIDGE_PERSONAS",
        "PHONEBRIDGE_DATA",
        "PHONEBRIDGE_MAX_CALLS",
        "PHONEBRIDGE_REPLICA_ID",
        "PHONEBRIDGE_WORKER",
        "PHONEBRIDGE_CALLER_MAX_CALLS_PER_HOUR",
        "PHONEBRIDGE_CALLER_MAX_CONCURRENT",
        "PHONEBRIDGE_MAX_NEW_CALLS_PER_MINUTE",
        "PHONEBRIDGE_BROWSER_CALLS_PER_USER",
        "PHONEBRIDGE_STREAM_SIGNATURE",
        "PHONEBRIDGE_PENDING_TIMEOUT",
        "PHONEBRIDGE_DASHBOARD_TOKEN",
        "PHONEBRIDGE_LOG_FORMAT",
        "PHONEBRIDGE_LOG_LEVEL",
        "PHONEBRIDGE_TRANSCRIBE_URL",
        "PHONEBRIDGE_TRANSCRIBE_KEY",
        "PHONEBRIDGE_TRANSCRIBE_MODEL",
        "PHONEBRIDGE_RETENTION_DAYS",
        "PHONEBRIDGE_WEBHOOK_SECRET",
        "PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL",
        "PHONEBRIDGE_RECORDING_LINK_SECONDS",
        "PHONEBRIDGE_ANSWER_WITHIN_SECONDS",
        "PHONEBRIDGE_HOST",
        "PHONEBRIDGE_PORT",
        "PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE",
        "PHONEBRIDGE_OUTBOUND_ENABLED",
        "PHONEBRIDGE_OUTBOUND_COUNTRIES",
        "PHONEBRIDGE_OUTBOUND_CALLER_IDS",
        "PHONEBRIDGE_OUTBOUND_DNC_FILE",
        "PHONEBRIDGE_OUTBOUND_RING_SECONDS",
        "PHONEBRIDGE_OUTBOUND_CARRIER",
        "PHONEBRIDGE_REDIS_URL",
        "PHONEBRIDGE_LEASE_TTL_SECONDS",
        "PHONEBRIDGE_REDIS_TIMEOUT_SECONDS",
        "PHONEBRIDGE_CRASH_CHECK_SECONDS",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_API_URL",
        "DATABASE_URL",
        "PERSONAPLEX_URLS",
        "PERSONAPLEX_HANDSHAKE_TIMEOUT",
        "POLARGRID_API_KEY",
        "POLARGRID_REGION",
        "POLARGRID_BASE_URL",
        "FAL_KEY",
        "FAL_BASE_URL",
        "PHONEBRIDGE_CARRIER_RATE",
        "TELNYX_PUBLIC_KEY",
        "TELNYX_API_KEY",
        "TELNYX_API_URL",
        "TELNYX_CONNECTION_ID",
        "PLIVO_AUTH_ID",
        "PLIVO_AUTH_TOKEN",
        "PLIVO_API_URL",
        "VONAGE_SIGNATURE_SECRET",
        "VONAGE_API_KEY",
        "VONAGE_APPLICATION_ID",
        "VONAGE_PRIVATE_KEY",
        "VONAGE_API_SECRET",
        "VONAGE_API_URL",
        "SIGNALWIRE_SIGNING_KEY",
        "SIGNALWIRE_PROJECT_ID",
        "SIGNALWIRE_API_TOKEN",
        "SIGNALWIRE_SPACE_URL",
        "EXOTEL_BASIC_USER",
        "EXOTEL_BASIC_PASSWORD",
        "EXOTEL_ALLOWED_IPS",
        "EXOTEL_ACCOUNT_SID",
        "EXOTEL_API_KEY",
        "EXOTEL_API_TOKEN",
        "EXOTEL_API_URL",
        "PHONEBRIDGE_S3_BUCKET",
        "PHONEBRIDGE_S3_ENDPOINT_URL",
        "PHONEBRIDGE_S3_PREFIX",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    }
)
"""Every variable :func:`Settings.from_env` reads (.env.example lists each one)."""
