"""Vonage signed webhooks and the WebSocket's ``Authorization`` JWT.

CARRIERS.md §3.5. With signed callbacks on, Vonage sends
``Authorization: Bearer <JWT>``: HS256 over the account's **signature secret**,
claims ``iat``, ``jti``, ``api_key`` and, for a request with a body,
``payload_hash`` = hex SHA-256 of the body. A ``websocket`` endpoint with
``authorization: {"type": "vonage"}`` gets the same kind of token on the
upgrade (its ``payload_hash`` meaning for a WebSocket is *unverified*, so it is
not checked there).

Checks, in order: the header is a Bearer JWT; the algorithm is HS256 (never
``none`` or another one chosen by the sender); the signature verifies with the
secret; ``iat`` is within ``max_age`` of ``now`` (Vonage signs no expiry, so
without this a captured token works forever); ``api_key`` is ours when we know
it; ``payload_hash`` matches the body when a body is given; the ``jti`` has not
been seen before (``seen``).

Why PyJWT and not ``vonage-jwt``'s ``verify_signature``: that helper is
exactly ``jwt.decode(token, secret, algorithms=["HS256"])`` and would bring
``vonage-utils`` and PyJWT's crypto extra for it; PyJWT is already installed
(``twilio`` needs it), and the claim checks above are ours to make either way.
"""

from __future__ import annotations

import hashlib
import hmac
import warnings
from collections.abc import Mapping
from typing import Any, Final

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from phonebridge.telephony.seen import SeenValues

DEFAULT_MAX_AGE_SECONDS: Final = 300.0


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def verify(
    authorization: str | None,
    signature_secret: str,
    now: float,
    *,
    body: bytes | None = None,
    api_key: str | None = None,
    seen: SeenValues | None = None,
    max_age: float = DEFAULT_MAX_AGE_SECONDS,
) -> Mapping[str, Any] | None:
    """The verified claims, or ``None`` when the request is not Vonage's."""
    token = bearer_token(authorization)
    if token is None or not signature_secret:
        return None
    try:
        with warnings.catch_warnings():
            # Vonage chooses the secret's length, not us: PyJWT's advice about
            # short HMAC keys is not actionable here.
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            claims: dict[str, Any] = jwt.decode(
                token,
                signature_secret,
                algorithms=["HS256"],
                options={"verify_exp": True, "verify_iat": False, "verify_aud": False},
            )
    except jwt.PyJWTError:
        return None
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or abs(now - iat) > max_age:
        return None
    if api_key is not None and claims.get("api_key") != api_key:
        return None
    if body is not None and "payload_hash" in claims:
        digest = hashlib.sha256(body).hexdigest()
        if not isinstance(claims["payload_hash"], str) or not hmac.compare_digest(
            digest, claims["payload_hash"].lower()
        ):
            return None
    jti = claims.get("jti")
    if seen is not None and (not isinstance(jti, str) or not seen.first_use("vonage:" + jti, now)):
        return None
    return claims


def sign(
    signature_secret: str,
    now: float,
    *,
    api_key: str,
    jti: str,
    body: bytes | None = None,
) -> str:
    """A token as Vonage signs it (phone simulator)."""
    claims: dict[str, Any] = {"iat": int(now), "jti": jti, "api_key": api_key}
    if body is not None:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, signature_secret, algorithm="HS256")
