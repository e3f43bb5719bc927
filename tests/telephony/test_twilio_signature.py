"""X-Twilio-Signature for webhooks and the media-stream upgrade (PROTOCOLS.md §1.4)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from phonebridge.telephony.twilio.signature import (
    public_request_url,
    sign,
    validate_stream_upgrade,
    validate_webhook,
)

TOKEN = "12345678901234567890123456789012"
URL = "https://bridge.example.com/twilio/voice"
PARAMS = {
    "CallSid": "CA0123456789abcdef0123456789abcdef",
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "+14165550100",
    "To": "+14165550123",
    "CallStatus": "ringing",
}


def reference_signature(token: str, url: str, params: dict[str, str]) -> str:
    """The algorithm as Twilio documents it, written independently of the twilio package."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_sign_matches_the_documented_algorithm() -> None:
    assert sign(TOKEN, URL, PARAMS) == reference_signature(TOKEN, URL, PARAMS)


def test_valid_webhook() -> None:
    assert validate_webhook(TOKEN, URL, PARAMS, reference_signature(TOKEN, URL, PARAMS))


def test_forged_missing_and_wrong_token() -> None:
    good = sign(TOKEN, URL, PARAMS)
    assert not validate_webhook(TOKEN, URL, PARAMS, None)
    assert not validate_webhook(TOKEN, URL, PARAMS, "")
    assert not validate_webhook(TOKEN, URL, PARAMS, "A" * len(good))
    assert not validate_webhook("other-token", URL, PARAMS, good)
    assert not validate_webhook("", URL, PARAMS, good)


def test_replay_with_changed_params_fails() -> None:
    good = sign(TOKEN, URL, PARAMS)
    assert not validate_webhook(TOKEN, URL, {**PARAMS, "To": "+14165550999"}, good)
    assert not validate_webhook(TOKEN, URL, {**PARAMS, "Extra": "1"}, good)
    assert not validate_webhook(TOKEN, URL + "?x=1", PARAMS, good)
    assert not validate_webhook(TOKEN, "http://bridge.example.com/twilio/voice", PARAMS, good)


def test_url_with_or_without_default_port() -> None:
    assert validate_webhook(
        TOKEN, "https://bridge.example.com:443/twilio/voice", PARAMS, sign(TOKEN, URL, PARAMS)
    )
    with_port = "https://bridge.example.com:443/twilio/voice"
    assert validate_webhook(TOKEN, URL, PARAMS, sign(TOKEN, with_port, PARAMS))
    # Twilio may sign with or without a non-default port, too; the host still counts.
    custom_port = "https://bridge.example.com:8443/twilio/voice"
    assert validate_webhook(TOKEN, custom_port, PARAMS, sign(TOKEN, custom_port, PARAMS))
    assert validate_webhook(TOKEN, custom_port, PARAMS, sign(TOKEN, URL, PARAMS))
    assert not validate_webhook(
        TOKEN, "https://evil.example.com:8443/twilio/voice", PARAMS, sign(TOKEN, URL, PARAMS)
    )


def test_stream_upgrade_signs_the_wss_url_with_empty_params() -> None:
    wss = "wss://bridge.example.com/twilio/media"
    signature = reference_signature(TOKEN, wss, {})
    assert validate_stream_upgrade(TOKEN, wss, signature)
    assert not validate_stream_upgrade(TOKEN, "ws://127.0.0.1:8000/twilio/media", signature)
    assert not validate_stream_upgrade(TOKEN, wss, None)
    assert not validate_stream_upgrade(TOKEN, wss, sign(TOKEN, URL, {}))


def test_public_request_url() -> None:
    assert public_request_url("https://x.example", "/twilio/voice") == (
        "https://x.example/twilio/voice"
    )
    assert public_request_url("https://x.example/pb/", "/twilio/voice", "a=1") == (
        "https://x.example/pb/twilio/voice?a=1"
    )


@given(
    params=st.dictionaries(st.text(min_size=1), st.text(), max_size=6),
    token=st.text(min_size=1),
)
def test_sign_then_validate_round_trips(params: dict[str, str], token: str) -> None:
    assert validate_webhook(token, URL, params, sign(token, URL, params))
