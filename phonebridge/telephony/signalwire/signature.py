"""SignalWire request signatures (the Twilio algorithm with the Signing Key).

CARRIERS.md §4.5. cXML webhooks are form posts signed exactly as Twilio signs
them — base64(HMAC-SHA1(key, URL + sorted params)) — but with the project's
**Signing Key** (not the API token), under ``X-SignalWire-Signature``
(``X-Twilio-Signature`` is accepted as an alias, as SignalWire's SDKs do).
The check is ``twilio.request_validator.RequestValidator`` — the same class
SignalWire's compat SDK (``signalwire`` 2.x) wraps — so no SignalWire package
is needed. JSON bodies (SWML fetches) are signed hex(HMAC-SHA1(key, URL +
raw body)), with ``X-Signalwire-SHA256-Signature`` = the SHA-256 variant,
preferred when present.

The media socket is not signed: ``authBearerToken`` comes back as
``Authorization: Bearer <token>`` on the upgrade, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER: Final = "X-SignalWire-Signature"
ALIAS_HEADER: Final = "X-Twilio-Signature"
SHA256_HEADER: Final = "X-Signalwire-SHA256-Signature"


def validate_form(
    signing_key: str, url: str, params: Mapping[str, str], signature: str | None
) -> bool:
    """True when ``signature`` signs this URL (as configured) and form body."""
    if not signature or not signing_key:
        return False
    return bool(RequestValidator(signing_key).validate(url, dict(params), signature))


def validate_json(
    signing_key: str, url: str, body: bytes, sha1_hex: str | None, sha256_hex: str | None
) -> bool:
    """JSON bodies: the SHA-256 header when present, else the SHA-1 one."""
    if not signing_key:
        return False
    message = url.encode() + body
    if sha256_hex:
        digest = hmac.new(signing_key.encode(), message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(digest, sha256_hex.strip().lower())
    if sha1_hex:
        digest = hmac.new(signing_key.encode(), message, hashlib.sha1).hexdigest()
        return hmac.compare_digest(digest, sha1_hex.strip().lower())
    return False


def sign_form(signing_key: str, url: str, params: Mapping[str, str]) -> str:
    """The ``X-SignalWire-Signature`` SignalWire would send (phone simulator)."""
    return str(RequestValidator(signing_key).compute_signature(url, dict(params)))


def verify_bearer(expected: str, authorization: str | None) -> bool:
    """The upgrade's ``Authorization: Bearer <authBearerToken>``, in constant time."""
    if not expected or not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(expected.encode(), token.strip().encode())
