"""Calls between the voice webhook and their media stream.

The webhook reserves a model slot and starts opening the model session at
once, so the seconds of model conditioning overlap Twilio's stream set-up
(ARCHITECTURE.md, life of a call step 1). From then until the media stream
claims it, the call is *pending*: it owns a lease and an opening (billed)
model socket, so it must have a deadline — a caller who hangs up while the
phone rings never opens a stream, and the socket must not stay open.

The stream proves it belongs to the webhook with a one-time token carried in
a TwiML ``<Parameter>``: a token is claimed once and then forgotten, so it
cannot open a second stream.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from phonebridge.calls.admission import Lease
from phonebridge.models.base import ModelSession, SessionRequest
from phonebridge.personas.schema import Persona


@dataclass(eq=False, slots=True)
class PendingCall:
    """Everything the webhook prepared for one call."""

    call_sid: str
    account_sid: str
    from_number: str
    to_number: str
    persona: Persona
    lease: Lease
    session: ModelSession
    token: str
    created: float
    deadline: float
    request: SessionRequest
    """What the model session was opened with: the persona's prompt and voice (or a
    dashboard user's one-call override) at the leg's rate."""
    channel: str = ""
    """The kind of leg the call will join (``twilio``, ``browser``), for the record."""
    placed_by: str | None = None
    """The dashboard user who placed the call (a browser call), else None."""
    events: list[tuple[float, str, str]] = field(default_factory=list)
    """(time, kind, detail) call events that happened before the stream (overflow...)."""
    opening: asyncio.Task[ModelSession] = field(init=False)
    """Resolves to the open session (maybe on the overflow provider); set by the
    webhook right after construction, because the task needs the call itself."""

    @property
    def sample_rate(self) -> int:
        """The leg's rate: the model session was opened for it (8 kHz for a phone line)."""
        return self.request.sample_rate


def new_token() -> str:
    """An unguessable one-time token (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


class PendingCalls:
    """Pending calls by token (for the stream) and by call SID (for webhook retries)."""

    def __init__(self) -> None:
        self._by_token: dict[str, PendingCall] = {}
        self._by_sid: dict[str, PendingCall] = {}
        # Calls taken out of the maps by a failed claim: still own a socket and a
        # lease, handed to the sweeper on its next pass.
        self._abandoned: list[PendingCall] = []

    def __len__(self) -> int:
        return len(self._by_token)

    def add(self, call: PendingCall) -> None:
        self._by_token[call.token] = call
        self._by_sid[call.call_sid] = call

    def by_call_sid(self, call_sid: str) -> PendingCall | None:
        return self._by_sid.get(call_sid)

    def get(self, token: str) -> PendingCall | None:
        """The call ``token`` reserved, left in place (a socket's upgrade check)."""
        return self._by_token.get(token)

    def withdraw(self, call_sid: str) -> PendingCall | None:
        """Remove and return the call ``call_sid`` reserved, if its stream never claimed it."""
        call = self._by_sid.pop(call_sid, None)
        if call is not None:
            self._by_token.pop(call.token, None)
        return call

    def claim(self, token: str, call_sid: str) -> PendingCall | None:
        """The pending call for ``token`` if it was made for ``call_sid``; once only.

        A token presented with the wrong call SID is burnt too: whoever holds
        it is not the stream Twilio opened for that call.
        """
        call = self._by_token.pop(token, None)
        if call is None:
            return None
        self._by_sid.pop(call.call_sid, None)
        if not secrets.compare_digest(call.call_sid, call_sid):
            self._abandoned.append(call)
            return None
        return call

    def expire(self, now: float) -> list[PendingCall]:
        """Remove and return the calls whose stream did not arrive in time."""
        expired = [call for call in self._by_token.values() if call.deadline <= now]
        for call in expired:
            self._by_token.pop(call.token, None)
            self._by_sid.pop(call.call_sid, None)
        expired.extend(self._abandoned)
        self._abandoned.clear()
        return expired

    def drain_all(self) -> list[PendingCall]:
        """Remove and return every pending call (shutdown)."""
        calls = [*self._by_token.values(), *self._abandoned]
        self._by_token.clear()
        self._by_sid.clear()
        self._abandoned.clear()
        return calls

    def next_deadline(self) -> float | None:
        if self._abandoned:
            return 0.0
        return min((call.deadline for call in self._by_token.values()), default=None)
