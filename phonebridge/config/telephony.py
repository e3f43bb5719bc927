"""The public URL and Twilio: what Twilio reaches, signs and streams to (§1.1, §1.4).

The public URL must be https://: Twilio opens media streams only over wss://,
and the stream URL is the public URL with that scheme (one rule, shared with
the TwiML builder: phonebridge/telephony/twilio/stream_url.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from phonebridge.config.common import HOST_PATTERN, PATH_PATTERN, is_loopback
from phonebridge.models.redact import redact_url
from phonebridge.telephony.twilio.stream_url import stream_url_problem

if TYPE_CHECKING:
    from phonebridge.config.settings import Settings

_ACCOUNT_SID_PATTERN = re.compile(r"^AC[0-9a-fA-F]{32}$")


def check_public_url(settings: Settings, problems: list[str]) -> SplitResult:
    placeholder = urlsplit("https://public-url.invalid")
    url = settings.public_url.strip()
    if not url:
        problems.append(
            "PHONEBRIDGE_PUBLIC_URL is not set: set it to the https:// base URL Twilio "
            "reaches (e.g. https://abcd.ngrok.app); webhook signatures are checked against it"
        )
        return placeholder
    parts = urlsplit(url)
    # urlsplit silently drops tabs and newlines; a host or path with odd
    # characters would give a stream URL Twilio cannot use or sign the same way.
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or not HOST_PATTERN.fullmatch(parts.hostname)
        or not PATH_PATTERN.fullmatch(parts.path)
        or any(character.isspace() for character in url)
    ):
        problems.append(
            f"PHONEBRIDGE_PUBLIC_URL {url!r} is not an http(s) URL with a host "
            "(e.g. https://abcd.ngrok.app)"
        )
        return placeholder
    if parts.query or parts.fragment or parts.username or parts.password:
        problems.append(
            f"PHONEBRIDGE_PUBLIC_URL {redact_url(url)!r} must be a plain base URL: no "
            "query string, fragment or credentials (Twilio rejects a stream URL with a query)"
        )
        return placeholder
    try:
        parts.port  # noqa: B018 - raises ValueError on an out-of-range port
    except ValueError:
        problems.append(f"PHONEBRIDGE_PUBLIC_URL {url!r} has an invalid port")
        return placeholder
    return parts._replace(path=parts.path.rstrip("/"))


def check_stream_url(settings: Settings, problems: list[str]) -> None:
    """Refuse a public URL whose stream URL the TwiML builder (and Twilio) would refuse."""
    problem = stream_url_problem(settings.stream_url)
    if problem is None:
        return
    problems.append(
        f"PHONEBRIDGE_PUBLIC_URL {settings.public_url!r} cannot be used, as the TwiML "
        f"would be refused: {problem}; use the https:// URL Twilio reaches (a TLS proxy "
        "or a tunnel such as ngrok), or `phonebridge demo` to try the bridge on this machine"
    )


def check_twilio(settings: Settings, problems: list[str]) -> None:
    if (
        settings.twilio_auth_token is None
        and not settings.skip_twilio_signature
        and not settings.carriers.enabled
    ):
        # Twilio is one carrier among six: a bridge for another one needs no
        # Twilio token (its routes then answer 404, like any carrier that is off).
        problems.append(
            "TWILIO_AUTH_TOKEN is not set and no other carrier is: set it to your Twilio auth "
            "token (Console > Account > API keys & tokens), or another carrier's secret "
            "(docs/carriers.md); "
            "for local development only, PHONEBRIDGE_INSECURE_SKIP_TWILIO_SIGNATURE=1 turns "
            "Twilio's check off"
        )
    sid = settings.twilio_account_sid
    if sid is not None and not _ACCOUNT_SID_PATTERN.fullmatch(sid):
        problems.append(
            f"TWILIO_ACCOUNT_SID {sid!r} is not an account SID ('AC' and 32 hex digits)"
        )
    api = settings.twilio_api_url
    if api is not None:
        # The REST client sends the account's credentials there.
        parts = urlsplit(api)
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            problems.append(
                "TWILIO_API_URL is not a plain https:// base URL (no credentials, query or "
                "fragment)"
            )
        elif parts.scheme == "http" and not is_loopback(parts.hostname):
            problems.append(
                "TWILIO_API_URL uses http://: use https:// (http only to a loopback host, "
                "for development): it carries the account's credentials"
            )
