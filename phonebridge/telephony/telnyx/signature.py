"""Telnyx webhook signatures (Ed25519) and the media socket's auth token.

CARRIERS.md §1.2 and §6. Telnyx signs every webhook with its account's Ed25519
key: ``telnyx-signature-ed25519`` = base64(Ed25519(``timestamp|raw body``)),
``telnyx-timestamp`` = Unix seconds. The public key (base64 of the 32 raw
bytes) is in the portal. The body must be the **raw bytes** received (§8.11).
A timestamp outside ``tolerance`` seconds of ``now`` is refused: the signature
covers it, so that is what stops a captured webhook from being replayed later.

Why ``cryptography`` and not the ``telnyx`` SDK's ``verify_webhook_signature``:
the SDK is a large generated REST client (plus PyNaCl for this one function);
``cryptography`` is a small, well-kept dependency that implements Ed25519
directly, and the check is the three lines below.

The media socket is not signed. With ``stream_auth_token`` set on
``streaming_start``, Telnyx sends it in the ``x-telnyx-streaming-auth-token``
upgrade header (and again in ``connected``); it is compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from phonebridge.errors import ConfigError

SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TIMESTAMP_HEADER: Final = "telnyx-timestamp"
STREAM_TOKEN_HEADER: Final = "x-telnyx-streaming-auth-token"  # noqa: S105 (a header name)
DEFAULT_TOLERANCE_SECONDS: Final = 300.0


def load_public_key(text: str) -> Ed25519PublicKey:
    """The portal's public key: base64 of 32 raw bytes. ``ConfigError`` otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"not a base64 Ed25519 public key: {exc}") from None


def verify_webhook(
    public_key: Ed25519PublicKey,
    body: bytes,
    *,
    signature: str | None,
    timestamp: str | None,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when ``signature`` is Telnyx's over ``timestamp|body`` and the time is fresh."""
    if not signature or not timestamp or not timestamp.isascii() or not timestamp.isdigit():
        return False
    if len(timestamp) > 12 or abs(now - int(timestamp)) > tolerance:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, timestamp.encode() + b"|" + body)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


def sign(private_key: Ed25519PrivateKey, body: bytes, timestamp: str) -> str:
    """The ``telnyx-signature-ed25519`` value Telnyx would send (phone simulator)."""
    return base64.b64encode(private_key.sign(timestamp.encode() + b"|" + body)).decode()


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    """Base64 of the raw public key, as the portal shows it."""
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def verify_stream_token(expected: str, presented: str | None) -> bool:
    """Constant-time check of the upgrade's ``x-telnyx-streaming-auth-token``."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
