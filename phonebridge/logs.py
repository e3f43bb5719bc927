"""Log output: one JSON object per line in production, readable text in development.

Configured once by the CLI (never at import). Every record passes a
:class:`SecretFilter` that masks the configured secrets — raw, URL-encoded,
and credential query parameters in any URL (``token=…`` for PolarGrid,
``fal_jwt_token=…`` for fal) — in the message, its arguments and any
traceback, so a library that logs a URL or a header cannot leak a key.

The call path logs with ``extra={"call_sid": ..., "persona": ...}``; both
formats carry those fields so one call's lines can be found together.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from phonebridge.config import LogFormat
from phonebridge.models.redact import MASK, SECRET_QUERY_PARAMS, redact

CALL_FIELDS = ("call_sid", "persona")

# ``name=value`` where the name is a credential query parameter: catches keys
# inside URLs that are embedded in longer messages (redact_url needs a bare URL).
_QUERY_SECRET = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_QUERY_PARAMS, key=len, reverse=True)) + r")=[^&\s'\"]+"
)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with secrets and credential query values masked."""
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", redact(text, secrets))


class SecretFilter(logging.Filter):
    """Masks secrets in a record before any handler formats it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = tuple(secret for secret in secrets if secret)

    def filter(self, record: logging.LogRecord) -> bool:
        message = scrub(record.getMessage(), self._secrets)
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, masked, and keep only the text.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(text, self._secrets)
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, call fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CALL_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [call_sid persona]: message`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(call)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = [str(getattr(record, name)) for name in CALL_FIELDS if hasattr(record, name)]
        record.call = f" [{' '.join(fields)}]" if fields else ""
        return super().format(record)


def configure_logging(
    *,
    level: str,
    log_format: LogFormat,
    secrets: Iterable[str],
    stream: TextIO | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one masked, formatted handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format is LogFormat.JSON else TextFormatter())
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
