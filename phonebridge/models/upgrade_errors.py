"""Typed errors for a refused WebSocket upgrade (PROTOCOLS.md §3 "Upgrade errors").

Pure mapping from an HTTP status (and its ``Retry-After`` header) to the
error tree, shared by every provider: 401/402/403 are the account's fault and
never retried; 429 is retried after the wait the provider asked for; 404/502
(and anything else) mean "this model is not reachable here, try elsewhere".
"""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

from phonebridge.errors import ModelAuthError, ModelError, ModelRateLimited, ModelUnavailable

AUTH_STATUSES: Final[dict[int, str]] = {
    401: "the key was rejected (bad or expired)",
    402: "the account needs billing attention",
    403: "the request was forbidden (key scope or the provider's firewall)",
}


def parse_retry_after(value: str | None, *, now_epoch: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    ``now_epoch`` (wall-clock seconds since the Unix epoch) is needed only for
    the date form; without it a date yields ``None`` rather than reading the
    clock here. A date already past means "now" (``0.0``). Anything unreadable
    is ``None``: the caller's default wait applies.
    """
    if value is None:
        return None
    value = value.strip()
    # isdigit() alone accepts "²" and other non-ASCII digits float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    if now_epoch is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # The obsolete asctime form carries no zone; every HTTP date is GMT (§5.6.7).
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_epoch)


def error_for_status(
    provider: str, status: int, retry_after: str | None = None, *, now_epoch: float | None = None
) -> ModelError:
    """The error to raise when ``provider`` refused the upgrade with ``status``."""
    if status in AUTH_STATUSES:
        return ModelAuthError(f"{provider}: HTTP {status}: {AUTH_STATUSES[status]}")
    if status == 429:
        wait = parse_retry_after(retry_after, now_epoch=now_epoch)
        hint = f", retry after {wait:g} s" if wait is not None else ""
        return ModelRateLimited(f"{provider}: HTTP 429: rate limited{hint}", retry_after=wait)
    if status == 404:
        return ModelUnavailable(f"{provider}: HTTP 404: the model is not served at this endpoint")
    return ModelUnavailable(f"{provider}: HTTP {status}: the upgrade was refused")
