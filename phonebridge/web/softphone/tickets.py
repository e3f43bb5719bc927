"""One-time tickets that bind a WebSocket to the dashboard page that asked for it.

Browsers cannot put an ``Authorization`` header on a WebSocket upgrade, and a
token in a URL ends up in logs and history. So an authenticated ``POST``
from the page (the dashboard's own auth) issues a ticket: 128 random bits,
valid once, for :data:`TICKET_SECONDS`, naming the user and what the socket
may do (place a call to a persona, with an optional one-call prompt/voice
override; or listen to one call). The socket presents it in its URL; a
ticket is forgotten the moment it is redeemed, so a replayed URL opens
nothing. Sans-I/O: time is passed in; at most :data:`MAX_TICKETS` are held
(the oldest is forgotten first).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

TICKET_SECONDS: Final = 30.0
"""Long enough for a page to open its socket on a slow link; short enough to be useless later."""
MAX_TICKETS: Final = 1_000


@dataclass(frozen=True, slots=True)
class TalkTicket:
    """Place one browser call to ``persona_id`` (``prompt``/``voice`` override it for this call)."""

    user: str
    persona_id: str
    prompt: str | None = None
    voice: str | None = None


@dataclass(frozen=True, slots=True)
class ListenTicket:
    """Listen to the live call ``call_sid``."""

    user: str
    call_sid: str


Ticket = TalkTicket | ListenTicket


class TicketBook:
    """Issued, unredeemed tickets."""

    def __init__(self, *, ttl: float = TICKET_SECONDS, capacity: int = MAX_TICKETS) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._tickets: OrderedDict[str, tuple[float, Ticket]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tickets)

    def issue(self, ticket: Ticket, now: float) -> str:
        self._forget_expired(now)
        token = secrets.token_urlsafe(16)
        self._tickets[token] = (now + self._ttl, ticket)
        while len(self._tickets) > self._capacity:
            self._tickets.popitem(last=False)
        return token

    def redeem(self, token: str, now: float) -> Ticket | None:
        """The ticket for ``token`` if it was issued, is unexpired and unused; once only."""
        entry = self._tickets.pop(token, None)
        if entry is None:
            return None
        expires, ticket = entry
        return ticket if now < expires else None

    def _forget_expired(self, now: float) -> None:
        while self._tickets:
            token, (expires, _) = next(iter(self._tickets.items()))
            if expires > now:
                return
            del self._tickets[token]
