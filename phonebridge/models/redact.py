"""Keep provider keys out of logs, exception messages and reprs (ARCHITECTURE.md "Secrets").

PolarGrid keys can travel as a ``token=`` query parameter and fal browser
tokens as ``fal_jwt_token=`` (PROTOCOLS.md §3, §4), so a URL is never logged
as is: pass it through :func:`redact_url`. Any other text that may hold a key
(an upstream error message, a websockets debug line with the
``Authorization`` or ``Sec-WebSocket-Protocol: bearer.…`` header) goes through
:func:`redact` with the secrets in hand; :class:`RedactingLogger` does that
for every record of a logger handed to a library.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

MASK: Final[str] = "***"

# Query parameters that carry credentials for the providers we speak to, plus
# the usual suspects, so a URL copied from elsewhere is safe to log too.
SECRET_QUERY_PARAMS: Final[frozenset[str]] = frozenset(
    {"token", "fal_jwt_token", "key", "api_key", "apikey", "access_token", "jwt", "auth"}
)


def redact_url(url: str) -> str:
    """``url`` with credential query values and any userinfo password masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # unparseable: it may hold anything, show nothing
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (name, MASK if name.lower() in SECRET_QUERY_PARAMS else value)
                for name, value in pairs
            ],
            safe="*",  # keep the mask readable
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (raw or URL-encoded) masked.

    Secrets shorter than 4 characters are ignored: masking every "a" in a log
    line would hide more than it protects.
    """
    for secret in secrets:
        if len(secret) < 4:
            continue
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, MASK)
    return text


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that formats each record and masks secrets before emitting it.

    Hand it to a library (``websockets.connect(logger=...)``): at DEBUG level
    websockets logs the request line and every upgrade header, which is where
    the key sits.
    """

    def __init__(self, logger: logging.Logger, secrets: Iterable[str]) -> None:
        super().__init__(logger, {})
        self._secrets = tuple(s for s in secrets if s)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):  # a malformed call must not break logging
            text = f"{msg} {args!r}"
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, "%s", redact(text, self._secrets), **kwargs)
