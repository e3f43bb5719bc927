"""Who may read the call history: the dashboard token (``PHONEBRIDGE_DASHBOARD_TOKEN``).

Two ways to present the token, both checked in constant time
(:func:`hmac.compare_digest`, so the comparison leaks nothing about how much
of a guess was right):

* ``Authorization: Bearer <token>`` (RFC 6750 §2.1) for scripts and ``curl``;
* HTTP Basic (RFC 7617) with any user name and the token as the password, so a
  browser opening the dashboard shows its own login prompt: a 401 carries
  ``WWW-Authenticate: Basic realm="phonebridge"``.

With no token configured, only loopback clients are let in (403 for anyone
else): the history holds callers' voices and numbers, so an unconfigured
server must not publish it. Behind a reverse proxy every request comes from
the proxy's address, which is often loopback: set a token whenever a proxy
fronts phonebridge.

The Twilio endpoints are never behind this check (Twilio cannot send the
token; they have their own signatures).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Callable

from fastapi import HTTPException, Request

REALM = "phonebridge"
_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}

AuthDependency = Callable[[Request], None]


def _presented_secret(authorization: str) -> bytes | None:
    """The secret in an ``Authorization`` header: a bearer token or a basic password."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials.encode("utf-8")
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return None
        _user, colon, password = decoded.partition(b":")
        return password if colon else None
    return None


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback); False for anything unparsable."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def dashboard_auth(token: str | None) -> AuthDependency:
    """A FastAPI dependency: pass with the token, or (no token set) from loopback only."""
    expected = token.encode("utf-8") if token else None

    def require_dashboard_access(request: Request) -> None:
        if expected is None:
            client = request.client.host if request.client is not None else None
            if not is_loopback(client):
                raise HTTPException(
                    status_code=403,
                    detail="set PHONEBRIDGE_DASHBOARD_TOKEN to use the dashboard remotely",
                )
            return
        presented = _presented_secret(request.headers.get("authorization", ""))
        # compare_digest on equal-type bytes; a missing secret still costs a comparison
        if not hmac.compare_digest(presented or b"", expected) or presented is None:
            raise HTTPException(status_code=401, detail="token required", headers=_CHALLENGE)

    return require_dashboard_access


def dashboard_user(request: Request) -> str:
    """Who is using the dashboard, for the record: the HTTP Basic user name.

    The dashboard has one token, not accounts; the Basic user name the
    browser's login prompt asks for is how operators tell themselves apart
    (the Talk page's per-user cap and "placed by", listen-in logs). Call only
    after the auth dependency passed. ``bearer`` for a bearer token, ``local``
    for a loopback client on a server without a token.
    """
    authorization = request.headers.get("authorization", "").strip()
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return "operator"
        user = decoded.partition(b":")[0].decode("utf-8", errors="replace").strip()
        return user[:64] or "operator"
    if scheme.lower() == "bearer":
        return "bearer"
    return "local"


__all__ = ["REALM", "AuthDependency", "dashboard_auth", "dashboard_user", "is_loopback"]
