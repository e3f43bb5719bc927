"""Structured logs: call fields carried, secrets masked everywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from phonebridge.config import LogFormat
from phonebridge.logs import configure_logging

SECRET = "pg_live_0123456789abcdef"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(level="DEBUG", log_format=LogFormat.JSON, secrets=[SECRET], stream=stream)
    try:
        yield stream, logging.getLogger("phonebridge.test")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_call_sid_and_persona(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    log.info("call ended: %s", "caller_hangup", extra={"call_sid": "CA1", "persona": "citysan"})
    (entry,) = lines(stream)
    assert entry["message"] == "call ended: caller_hangup"
    assert entry["call_sid"] == "CA1"
    assert entry["persona"] == "citysan"
    assert entry["level"] == "info"


def test_secrets_are_masked_in_messages_args_urls_and_tracebacks(
    capture: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = capture
    log.warning("upgrade with Sec-WebSocket-Protocol: bearer.%s", SECRET)
    log.warning("connecting to wss://x.example/v1?voice=NATF0&token=%s&persona=hi", "abc123xyz")
    try:
        raise RuntimeError(f"provider said no to {SECRET}")
    except RuntimeError:
        log.exception("open failed")
    text = stream.getvalue()
    assert SECRET not in text
    assert "abc123xyz" not in text
    assert "token=***" in text
    assert len(lines(stream)) == 3
    assert "provider said no to ***" in str(lines(stream)[2]["error"])


def test_text_format_for_development() -> None:
    root = logging.getLogger()
    saved = list(root.handlers)
    stream = io.StringIO()
    configure_logging(level="INFO", log_format=LogFormat.TEXT, secrets=[], stream=stream)
    try:
        logging.getLogger("x").info("hello", extra={"call_sid": "CA9"})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
    assert "INFO x [CA9]: hello" in stream.getvalue()
