"""Signatures on the requests phonebridge sends, and on its expiring recording URLs.

docs/webhooks.md, "Verifying a request". Every request the bridge POSTs (the
context lookup, the call summary) carries::

    X-Phonebridge-Timestamp: 1712930400            (Unix seconds, when it was signed)
    X-Phonebridge-Signature: v1=<hex>              (HMAC-SHA256)

where ``<hex>`` is HMAC-SHA256 with the shared secret
(``PHONEBRIDGE_WEBHOOK_SECRET``) over the bytes ``<timestamp>.<body>``. The
receiver recomputes it over the raw body, compares in constant time, and
refuses a timestamp more than :data:`TOLERANCE_SECONDS` away from its clock
(a captured request cannot be replayed later). The scheme is Stripe's and
Slack's: receivers already have code for it.

Recording links are signed the same way over ``recording.<call_sid>.<expires>``,
with a key derived from the secret (a link's signature is never a valid
request signature, and the reverse).

Pure: no clock read (``now`` passed in), no I/O.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Phonebridge-Timestamp"
SIGNATURE_HEADER = "X-Phonebridge-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
VERSION = "v1"
TOLERANCE_SECONDS = 300
"""How far a request's timestamp may be from the receiver's clock (5 minutes, as Stripe)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Phonebridge-Signature`` value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{VERSION}={mac.hexdigest()}"


def signed_headers(secret: str, now: float, body: bytes) -> dict[str, str]:
    timestamp = int(now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(
    secret: str,
    body: bytes,
    timestamp: str | None,
    sent: str | None,
    now: float,
    *,
    tolerance: float = TOLERANCE_SECONDS,
) -> bool:
    """Did the holder of ``secret`` sign ``body``, recently? (What a receiver runs.)"""
    if not timestamp or not sent or not timestamp.isascii() or not timestamp.isdigit():
        return False
    stamp = int(timestamp)
    if abs(now - stamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, stamp, body), sent)


def _link_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"phonebridge recording links", hashlib.sha256).digest()


def recording_signature(secret: str, call_sid: str, expires: int) -> str:
    message = f"recording.{call_sid}.{expires}".encode()
    return hmac.new(_link_key(secret), message, hashlib.sha256).hexdigest()


def recording_query(secret: str, call_sid: str, now: float, valid_seconds: float) -> str:
    """``expires=...&signature=...`` for a recording link valid ``valid_seconds`` from ``now``."""
    expires = int(now + valid_seconds)
    return f"expires={expires}&signature={recording_signature(secret, call_sid, expires)}"


def verify_recording(
    secret: str, call_sid: str, expires: str | None, sent: str | None, now: float
) -> bool:
    """A recording link is good until its ``expires`` (Unix seconds), if its signature is ours."""
    if not expires or not sent or not expires.isascii() or not expires.isdigit():
        return False
    if int(expires) < now:
        return False
    return hmac.compare_digest(recording_signature(secret, call_sid, int(expires)), sent)
