"""Keys never reach logs or messages: redact helpers (ARCHITECTURE.md "Secrets")."""

from __future__ import annotations

import logging
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.models.factory import FalSettings, PolarGridSettings
from phonebridge.models.redact import MASK, RedactingLogger, redact, redact_url

SECRET_CHARS = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="*")


def test_redact_url_masks_tokens_and_passwords() -> None:
    url = "wss://user:pw123@api.x.ai/v1?voice=NATF0&token=pg_abc&persona=hi+there"
    shown = redact_url(url)
    assert "pg_abc" not in shown
    assert "pw123" not in shown
    assert "voice=NATF0" in shown
    assert "token=***" in shown
    assert "eyJ" not in redact_url("wss://h/p?fal_jwt_token=eyJ")


@given(
    secret=st.text(SECRET_CHARS, min_size=4, max_size=40),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_redact_removes_every_form_of_the_secret(secret: str, before: str, after: str) -> None:
    text = before + secret + after + quote(secret, safe="") + quote_plus(secret)
    shown = redact(text, [secret])
    assert secret not in shown
    assert quote(secret, safe="") not in shown
    assert quote_plus(secret) not in shown


def test_short_secrets_are_not_masked_everywhere() -> None:
    assert redact("a b c", ["a"]) == "a b c"


def test_redacting_logger_formats_then_masks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log = RedactingLogger(logging.getLogger("phonebridge.models.test"), ["pg_secret_1"])
    log.debug("> %s: %s", "Sec-WebSocket-Protocol", "bearer.pg_secret_1")
    log.info("bad format %s %s", "only one")  # noqa: PLE1206 - a caller bug must not raise
    assert caplog.records[0].getMessage() == f"> Sec-WebSocket-Protocol: bearer.{MASK}"
    assert "only one" in caplog.records[1].getMessage()


def test_settings_reprs_hide_keys() -> None:
    assert "k-123456" not in repr(PolarGridSettings(api_key="k-123456"))
    assert "k-123456" not in repr(FalSettings(api_key="k-123456"))
