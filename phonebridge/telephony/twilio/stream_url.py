"""The one rule for a ``<Stream url>`` Twilio accepts (PROTOCOLS.md §1.1).

Two places need it and must agree: the TwiML builder refuses to write a
stream URL Twilio would refuse, and start-up refuses a public URL whose
stream URL would be refused (an ``http://`` public URL used to pass start-up
and then answer every voice webhook with HTTP 500). Pure and dependency-free,
so :mod:`phonebridge.config` can import it without the ``twilio`` package.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def stream_url_problem(url: str) -> str | None:
    """Why Twilio would refuse ``url`` as a ``<Stream url>``; ``None`` if it is fine.

    Twilio opens media streams only over ``wss://`` (a ``ws://`` URL fails the
    call), and a query string fails the handshake with error 31920: per-call
    data travels as ``<Parameter>``s instead.
    """
    parts = urlsplit(url)
    if parts.scheme != "wss" or not parts.hostname:
        return f"<Stream url> must be an absolute wss:// URL (Twilio opens no ws://), got {url!r}"
    if parts.query or "?" in url:
        return (
            f"<Stream url> must not carry a query string (Twilio error 31920): {url!r}; "
            "pass per-call data as <Parameter>s"
        )
    if parts.fragment:
        return f"<Stream url> must not carry a fragment: {url!r}"
    return None
