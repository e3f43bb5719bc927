"""The small interfaces shared state sits behind (ARCHITECTURE.md "Growing: many replicas").

Each has two implementations: in memory (:mod:`.memory`, one process, the
embedded default) and Redis (:mod:`.redis_leases`, :mod:`.redis_guard`,
:mod:`.redis_state`, a cluster of replicas). The call logic (``calls/``)
sees only these.

Failure contract of every Redis implementation (docs/deployment.md "Shared
state in Redis"): a request that fails or outlives its timeout raises
:class:`~phonebridge.errors.CoordinationError` only where the caller has a
safe answer to it (a lease: overflow or busy); everywhere else (the guard,
replay memory, gates, releases, renewals) the implementation degrades to its
local state, counts it in a metric and never raises into a call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Set
from dataclasses import dataclass
from typing import Protocol

from phonebridge.calls.guard import GuardDecision
from phonebridge.models.retry_gate import RetryGate

__all__ = [
    "CallGuard",
    "ReplayMemory",
    "ReplicaRegistry",
    "RetryGate",
    "RingingHangups",
    "ServerHold",
    "ServerLeases",
    "Withdraw",
]


@dataclass(frozen=True, slots=True)
class ServerHold:
    """An exclusive hold on one self-hosted server, proven by ``token``."""

    url: str
    token: str


class ServerLeases(Protocol):
    """Exclusive holds on the self-hosted servers (one call per server, PROTOCOLS.md §2.5)."""

    @property
    def size(self) -> int:
        """How many servers the pool has."""
        ...

    @property
    def urls(self) -> tuple[str, ...]:
        """The pool's servers (PERSONAPLEX_URLS, duplicates dropped)."""
        ...

    def held_urls(self) -> Set[str]:
        """The servers this process holds now (for ``phonebridge_leases_held``)."""
        ...

    @property
    def in_use(self) -> int:
        """Servers this process holds."""
        ...

    @property
    def available(self) -> bool:
        """Whether holds can be granted at all (False: the shared store is unreachable)."""
        ...

    def free_count(self) -> int:
        """Servers neither held (by anyone) nor resting, as last known; sync for scrapes."""
        ...

    async def try_acquire(self) -> ServerHold | None:
        """A free server, now held; ``None`` if none is free.

        Raises :class:`~phonebridge.errors.CoordinationError` when it cannot
        know: the caller must then *not* use a self-hosted server (two
        processes on one server swap a caller's persona, PROTOCOLS.md §2.1).
        """
        ...

    def release(self, hold: ServerHold) -> None:
        """Give the server back (compare-and-delete); never raises, may finish in the background."""
        ...

    async def rest(self, url: str) -> None:
        """Keep ``url`` out of rotation for a while (it may be stuck in a session, §2.5)."""
        ...


class CallGuard(Protocol):
    """The toll-fraud limits (calls/guard.py) as one process or a cluster sees them."""

    async def admit(self, from_number: str, call_sid: str) -> GuardDecision:
        """May this call start? An admitted call holds a reservation until :meth:`confirm`
        or :meth:`cancel`."""
        ...

    def confirm(self, caller: str, call_sid: str) -> None:
        """The admitted call took a slot: it counts against the rates and concurrency."""
        ...

    async def cancel(self, caller: str, call_sid: str) -> None:
        """The admitted call got the busy answer after all: it uses no quota."""
        ...

    def release(self, caller: str, call_sid: str) -> None:
        """The confirmed call gave its slot back (its lease was released)."""
        ...


class ReplayMemory(Protocol):
    """Call SIDs a voice webhook was already answered for (calls/guard.py AnsweredCalls).

    With the SID, the answer itself is kept while its call is pending: Twilio
    retries a webhook it got no answer to, and behind a load balancer the
    retry may land on another replica than the one holding the call. That
    replica answers the same document (its ``<Stream>`` names the holding
    replica and carries the one-time token), so the stream still reaches the
    held model session; a replay after the stream claimed the call finds no
    answer and gets ``<Hangup/>``.
    """

    async def first_answer(self, call_sid: str) -> bool:
        """True (and remembered) the first time ``call_sid`` is seen; False for a replay."""
        ...

    async def remember_answer(self, call_sid: str, document: str, ttl_seconds: float) -> None:
        """Keep the answer given to ``call_sid`` for ``ttl_seconds`` (the pending timeout)."""
        ...

    async def previous_answer(self, call_sid: str) -> str | None:
        """The kept answer of a call still pending somewhere; None if none (a replay)."""
        ...

    def forget_answer(self, call_sid: str) -> None:
        """The call was claimed (or abandoned): no retry may be answered any more.

        Never raises; may finish in the background."""
        ...


class ReplicaRegistry(Protocol):
    """Which replicas are alive (a heartbeat with a TTL): survivors clean up after the dead."""

    replica_id: str

    async def alive_replicas(self) -> set[str]:
        """Ids of the replicas whose heartbeat has not expired (this one included)."""
        ...


Withdraw = Callable[[str], Awaitable[object]]
"""What a replica does with a signalled call SID (``Bridge.withdraw_signalled``)."""


class RingingHangups(Protocol):
    """Calls that ended while they rang, told to every replica.

    A carrier's hang-up callback (Twilio's number status callback, Telnyx's
    ``call.hangup``) reaches one replica; the pending call (its model socket,
    billed while it rings) may be held by another. The replica that hears the
    hang-up and does not hold the call publishes its SID; every replica's
    subscriber withdraws it if it holds it pending.

    Delivery is best effort, like Redis pub/sub: a signal published while a
    subscriber is not listening (Redis down, a reconnect in progress) is lost
    for it, and the pending deadline still frees the call.
    """

    @property
    def listening(self) -> bool:
        """Whether a signal published now reaches this replica's subscriber."""
        ...

    async def publish(self, call_sid: str) -> None:
        """Tell every replica (this one included); never raises."""
        ...

    async def run_forever(self, withdraw: Withdraw) -> None:
        """Hand every signalled SID to ``withdraw`` until cancelled (a background task).

        Never returns on its own: a lost store is waited out and the
        subscription renewed. An exception from ``withdraw`` is logged, not raised.
        """
        ...
