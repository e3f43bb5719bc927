"""Exotel authentication: HTTP Basic from the URL's userinfo, or an IP allow-list.

CARRIERS.md §5.2 and §5.5. Exotel signs nothing (no signature header is
documented on its applet fetches, Passthru or status callbacks, nor on the
media socket). What it offers:

- **Basic auth**: write ``KEY:TOKEN@`` into the applet's URL
  (``wss://KEY:TOKEN@bridge.example/exotel/media``) and Exotel sends
  ``Authorization: Basic base64(KEY:TOKEN)``; checked here in constant time
  (user and password both compared, no early exit);
- **IP allow-listing**: accept only Exotel's published source ranges
  (configured, since they differ per region and change).

When both are configured both must pass. The web layer must take the client
address from the socket, never from ``X-Forwarded-For`` unless a trusted proxy
wrote it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Sequence

from phonebridge.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"203.0.113.0/24, 198.51.100.7"`` → networks; ``ConfigError`` on a bad entry."""
    networks: list[Network] = []
    for item in text.replace(";", ",").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(f"not an IP address or network: {item.strip()!r}") from exc
    return tuple(networks)


def address_allowed(networks: Sequence[Network], address: str | None) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def basic_header(user: str, password: str) -> str:
    """``Basic base64(user:password)``: what Exotel sends for ``user:password@`` in the URL."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def check_basic(user: str, password: str, authorization: str | None) -> bool:
    if not user or not authorization:
        return False
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    got_user, sep, got_password = decoded.partition(":")
    user_ok = hmac.compare_digest(got_user.encode(), user.encode())
    password_ok = hmac.compare_digest(got_password.encode(), password.encode())
    return bool(sep) and user_ok and password_ok


def authorized(
    *,
    user: str,
    password: str,
    networks: Sequence[Network],
    authorization: str | None,
    address: str | None,
) -> bool:
    """The request passes every configured check (and at least one is configured)."""
    if not user and not networks:
        return False
    if user and not check_basic(user, password, authorization):
        return False
    return not networks or address_allowed(networks, address)
