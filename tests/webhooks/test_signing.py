"""Signatures, checked the way docs/webhooks.md tells a receiver to check them."""

from __future__ import annotations

import hashlib
import hmac

from phonebridge.webhooks.signing import (
    recording_query,
    signed_headers,
    verify,
    verify_recording,
)

SECRET = "whsec-test"
BODY = b'{"event":"call.ended","call":{"call_sid":"CA1"}}'


def documented_check(secret: str, body: bytes, headers: dict[str, str], now: float) -> bool:
    """docs/webhooks.md, "Verifying a request", step by step, without our code."""
    timestamp = headers["X-Phonebridge-Timestamp"]  # 1. read the timestamp
    if abs(now - int(timestamp)) > 300:  # 2. refuse an old (or future) one
        return False
    signed = timestamp.encode() + b"." + body  # 3. timestamp, a dot, the raw body
    expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()  # 4.
    return hmac.compare_digest(expected, headers["X-Phonebridge-Signature"])  # 5.


def test_a_signature_verifies_with_the_documented_steps() -> None:
    headers = signed_headers(SECRET, 1_712_930_400.7, BODY)
    assert headers["X-Phonebridge-Timestamp"] == "1712930400"
    assert documented_check(SECRET, BODY, headers, now=1_712_930_401)
    assert verify(
        SECRET,
        BODY,
        headers["X-Phonebridge-Timestamp"],
        headers["X-Phonebridge-Signature"],
        1_712_930_401,
    )


def test_a_changed_body_a_wrong_secret_or_an_old_timestamp_fail() -> None:
    headers = signed_headers(SECRET, 1_712_930_400, BODY)
    stamp, sent = headers["X-Phonebridge-Timestamp"], headers["X-Phonebridge-Signature"]
    assert not documented_check(SECRET, BODY + b" ", headers, now=1_712_930_400)
    assert not verify(SECRET, BODY + b" ", stamp, sent, 1_712_930_400)
    assert not verify("other", BODY, stamp, sent, 1_712_930_400)
    assert not verify(SECRET, BODY, stamp, sent, 1_712_930_400 + 301)  # a replay, later
    assert not verify(SECRET, BODY, None, sent, 1_712_930_400)
    assert not verify(SECRET, BODY, "12a", sent, 1_712_930_400)
    assert not verify(SECRET, BODY, str(int(stamp) + 1), sent, 1_712_930_400)


def test_a_recording_link_works_until_it_expires() -> None:
    query = dict(part.split("=") for part in recording_query(SECRET, "CA1", 1000.0, 60).split("&"))
    assert query["expires"] == "1060"
    assert verify_recording(SECRET, "CA1", query["expires"], query["signature"], now=1059.9)
    assert verify_recording(SECRET, "CA1", query["expires"], query["signature"], now=1060.0)
    assert not verify_recording(SECRET, "CA1", query["expires"], query["signature"], now=1060.1)
    # Stretched in time, or pointed at another call: refused.
    assert not verify_recording(SECRET, "CA1", "99999", query["signature"], now=1000)
    assert not verify_recording(SECRET, "CA2", query["expires"], query["signature"], now=1000)


def test_a_link_signature_is_never_a_request_signature() -> None:
    query = dict(part.split("=") for part in recording_query(SECRET, "CA1", 1000.0, 60).split("&"))
    body = b"recording.CA1.1060"
    assert not verify(SECRET, body, "1060", "v1=" + query["signature"], 1060)
