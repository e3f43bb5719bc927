"""The speech-to-speech providers: PersonaPlex servers, PolarGrid and fal (§2-§4)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from phonebridge.config.common import HOST_PATTERN, PATH_PATTERN, is_loopback
from phonebridge.models.redact import redact_url

if TYPE_CHECKING:
    from phonebridge.config.settings import Settings

# The region becomes part of a host name (api.<region>.edge.polargrid.ai, §3):
# a strict pattern keeps a stray value from pointing the key at another host.
_REGION_PATTERN = re.compile(r"^[a-z]{2,5}-[0-9]{2}$")


def check_providers(settings: Settings, problems: list[str]) -> None:
    seen: set[tuple[str, str, int | None, str]] = set()
    for url in settings.personaplex_urls:
        parts = urlsplit(url)
        shown = redact_url(url)
        try:
            port = parts.port
        except ValueError:
            problems.append(f"PERSONAPLEX_URLS: {shown!r} has an invalid port")
            continue
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            problems.append(
                f"PERSONAPLEX_URLS: {shown!r} is not a ws:// or wss:// URL with a host "
                "(e.g. ws://gpu-1:8998)"
            )
            continue
        if parts.query or parts.fragment:
            problems.append(
                f"PERSONAPLEX_URLS: {shown!r} must not carry a query string; the bridge adds "
                "the prompt and voice itself"
            )
            continue
        # One server listed twice would get two leases, so two concurrent calls:
        # the second hangs silently or runs with the first's prompt (§2.5).
        key = (parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/"))
        if key in seen:
            problems.append(
                f"PERSONAPLEX_URLS lists {shown!r} twice: each server takes one call at a time"
            )
        seen.add(key)
    if not _REGION_PATTERN.fullmatch(settings.polargrid_region):
        problems.append(
            f"POLARGRID_REGION {settings.polargrid_region!r} is not a region id (e.g. yto-01)"
        )
    if settings.personaplex_handshake_timeout <= 0:
        problems.append("PERSONAPLEX_HANDSHAKE_TIMEOUT must be more than 0 seconds")


def check_hosted_endpoints(settings: Settings, problems: list[str]) -> None:
    """POLARGRID_BASE_URL and FAL_BASE_URL: where the provider keys are sent.

    The key goes to whatever host these name, so they are held to more than
    "is a URL": TLS (plain ws:// only to this machine, for a simulator or a
    local tunnel), and no part a key could hide in and end up in a proxy's
    access log (userinfo, query string, fragment). Problems quote the URL
    without those parts, so a key put there is not echoed either.
    """
    for name, url, key_name, key in (
        (
            "POLARGRID_BASE_URL",
            settings.polargrid_base_url,
            "POLARGRID_API_KEY",
            settings.polargrid_api_key,
        ),
        ("FAL_BASE_URL", settings.fal_base_url, "FAL_KEY", settings.fal_key),
    ):
        if url is None:
            continue
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on an out-of-range port
        except ValueError:
            problems.append(f"{name} is not a valid URL (e.g. wss://pg.example.net)")
            continue
        shown = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        host = parts.hostname or ""
        if (
            parts.scheme not in ("wss", "ws")
            or not HOST_PATTERN.fullmatch(host)
            or not PATH_PATTERN.fullmatch(parts.path)
            or any(character.isspace() for character in url)
        ):
            problems.append(
                f"{name} {shown!r} is not a wss:// URL with a host (e.g. wss://pg.example.net)"
            )
        elif "@" in parts.netloc:
            problems.append(
                f"{name} {shown!r} must not carry credentials (user@): the key is sent in a header"
            )
        elif parts.query or parts.fragment or url.endswith(("?", "#")):
            problems.append(
                f"{name} {shown!r} must not carry a query string or fragment: the bridge adds "
                "its parameters and sends the key in a header"
            )
        elif parts.scheme == "ws" and not is_loopback(host):
            problems.append(
                f"{name} {shown!r} uses ws://: use wss:// (plain ws:// only to a loopback "
                "host, for development)"
            )
        elif key is None:
            problems.append(f"{name} is set but {key_name} is not: set the key too, or unset it")
        elif len(key.get_secret_value()) >= 8 and key.get_secret_value() in url:
            # Short keys are test values; a real key is long enough not to match by chance.
            problems.append(f"{name} contains {key_name}: remove it (the key is sent in a header)")
