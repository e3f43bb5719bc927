"""Plivo request signatures, V3 (HMAC-SHA256 with a nonce).

CARRIERS.md §2.7. Every HTTP request Plivo makes (answer URL, status
callbacks) carries ``X-Plivo-Signature-V3`` (signed with the (sub)account
auth token), ``X-Plivo-Signature-Ma-V3`` (always the main account's token) and
``X-Plivo-Signature-V3-Nonce``. The signed string is the URL *as configured*
with the parameters folded in (see :func:`signed_base`), then ``.`` and the
nonce; the signature is base64(HMAC-SHA256(token, that)); the header may hold
several comma-separated signatures, any of which may match.

Why not ``plivo.utils.validate_v3_signature``: it compares with ``in`` (not in
constant time), and the ``plivo`` package brings lxml, six and a REST client
for one 30-line function. The tests check this module against that helper
(an independent implementation) on random requests.

The nonce is not a timestamp, so a captured request verifies forever:
:class:`~phonebridge.telephony.seen.SeenValues` remembers nonces and the web
layer refuses a second use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

SIGNATURE_HEADER: Final = "X-Plivo-Signature-V3"
MAIN_ACCOUNT_SIGNATURE_HEADER: Final = "X-Plivo-Signature-Ma-V3"
NONCE_HEADER: Final = "X-Plivo-Signature-V3-Nonce"

Params = Mapping[str, str | Sequence[str]]


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else sorted(value)


def _query_string(params: Params) -> str:
    return "&".join(f"{key}={value}" for key in sorted(params) for value in _values(params[key]))


def signed_base(method: str, url: str, params: Params) -> str:
    """The string Plivo signs before ``.nonce`` (§2.7 step 2)."""
    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query: dict[str, str | Sequence[str]] = dict(parse_qs(parts.query, keep_blank_values=True))
    if method.upper() == "GET":
        merged = {**params, **query}
        text = _query_string(merged)
        return f"{bare}?{text}" if text else bare
    text = _query_string(query)
    if params:
        base = f"{bare}?{text}." if text else f"{bare}?"
    else:
        base = f"{bare}?{text}" if text else bare
    return base + "".join(key + value for key in sorted(params) for value in _values(params[key]))


def sign(auth_token: str, method: str, url: str, params: Params, nonce: str) -> str:
    """The signature Plivo would send (also used by the phone simulator)."""
    message = f"{signed_base(method, url, params)}.{nonce}".encode()
    return base64.b64encode(
        hmac.new(auth_token.encode(), message, hashlib.sha256).digest()
    ).decode()


def validate(
    auth_token: str,
    method: str,
    url: str,
    params: Params,
    *,
    nonce: str | None,
    signature_header: str | None,
) -> bool:
    """True when any signature in ``signature_header`` is Plivo's for this request."""
    if not auth_token or not nonce or not signature_header:
        return False
    expected = sign(auth_token, method, url, params, nonce).encode()
    found = False
    for candidate in signature_header.split(","):
        # No early exit: the time taken does not say which candidate matched.
        found |= hmac.compare_digest(expected, candidate.strip().encode())
    return found
