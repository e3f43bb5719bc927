"""Admission: who may take a call, on which model, with which server.

A self-hosted PersonaPlex server runs one conversation at a time and *hangs*
a second connection silently (PROTOCOLS.md §2.5) — and, through a server bug,
may even run it with another caller's prompt. So the bridge never queues on a
busy server: it holds an exclusive :class:`Lease` per server from a
:class:`~phonebridge.coordination.base.ServerLeases` (in this process's
memory, or in Redis shared by every replica), and a call that finds no free
server goes to the persona's overflow provider or hears the busy message.

Hosted providers (PolarGrid, fal) have no per-server limit here; the
per-instance cap on concurrent calls bounds them.

Acquiring may wait on Redis; a slot is reserved against the instance cap
before that wait, so concurrent webhooks cannot overshoot it. Releasing never
waits (every exit path calls it, some from ``finally`` blocks): a shared hold
is given back in the background. When the shared store cannot be reached the
self-hosted pool is *closed*, never replaced by an unshared local one (that
would be the prompt-swap hazard, §2.1): the call overflows or hears busy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from phonebridge.coordination.base import ServerHold, ServerLeases
from phonebridge.coordination.memory import ServerPool
from phonebridge.errors import CapacityError, CoordinationError

log = logging.getLogger(__name__)

SELF_HOSTED = "personaplex"


@dataclass(eq=False, slots=True)
class Lease:
    """The right to run one call on ``provider`` (and ``server_url`` if self-hosted)."""

    provider: str
    server_url: str | None
    overflowed: bool
    _release: Callable[[Lease], None] = field(repr=False)
    released: bool = False
    riders: list[Callable[[], None]] = field(default_factory=list, repr=False)
    """What the call holds for exactly as long as its lease (the guard's slot):
    released with it, and handed on to the overflow lease by
    :meth:`Admission.move_to_overflow`."""

    def release(self) -> None:
        """Give the slot back. Idempotent: every exit path of a call may call it."""
        if self.released:
            return
        self.released = True
        self._release(self)
        riders, self.riders = self.riders, []
        for rider in riders:
            rider()


class Admission:
    """Grants leases, honouring the instance cap, the server pool and overflow."""

    def __init__(
        self,
        pool: ServerLeases,
        *,
        available_providers: Iterable[str],
        max_calls: int,
    ) -> None:
        self.pool = pool
        self._providers = frozenset(available_providers)
        self._max_calls = max_calls
        self._active: set[Lease] = set()
        self._holds: dict[Lease, ServerHold] = {}
        self._reserving = 0  # acquires waiting on the shared store, counted against the cap
        self.draining = False

    @property
    def active_calls(self) -> int:
        return len(self._active)

    def can_take_calls(self) -> bool:
        """Readiness: not draining, under the cap, and some provider can take a call."""
        return self.readiness() is None

    def readiness(self) -> str | None:
        """``None`` when ready to take a call, else why not (``/readyz`` shows it)."""
        if self.draining:
            return "draining"
        if len(self._active) + self._reserving >= self._max_calls:
            return f"at the per-instance cap of {self._max_calls} concurrent calls"
        if self._providers - {SELF_HOSTED}:
            return None  # a hosted provider can always be asked
        if SELF_HOSTED not in self._providers:
            return "no model provider configured"
        if not self.pool.available:
            return "coordination store unreachable: self-hosted pool closed"
        if self.pool.free_count() == 0:
            return "no free self-hosted server"
        return None

    async def acquire(self, provider: str, overflow: str | None) -> Lease:
        """A lease for ``provider``, else ``overflow``; :class:`CapacityError` if neither."""
        if self.draining:
            raise CapacityError("draining: not taking new calls")
        if len(self._active) + self._reserving >= self._max_calls:
            raise CapacityError(f"at the per-instance cap of {self._max_calls} concurrent calls")
        self._reserving += 1
        try:
            lease = await self._try(provider, overflowed=False)
            if lease is None and overflow is not None:
                lease = await self._try(overflow, overflowed=True)
        finally:
            self._reserving -= 1
        if lease is None:
            raise CapacityError(
                f"no free {provider} slot"
                + (f" and overflow {overflow} unavailable" if overflow else " and no overflow")
            )
        self._active.add(lease)
        return lease

    async def move_to_overflow(self, lease: Lease, overflow: str) -> Lease:
        """Trade ``lease`` (its provider failed to open) for one on ``overflow``.

        The old lease is released either way; :class:`CapacityError` if the
        overflow provider cannot take the call (its riders are released then).
        """
        riders, lease.riders = lease.riders, []
        lease.release()
        moved = None
        if not self.draining:
            self._reserving += 1
            try:
                moved = await self._try(overflow, overflowed=True)
            finally:
                self._reserving -= 1
        if moved is None:
            for rider in riders:
                rider()
            raise CapacityError(f"overflow {overflow} unavailable")
        moved.riders = riders
        self._active.add(moved)
        return moved

    async def _try(self, provider: str, *, overflowed: bool) -> Lease | None:
        if provider not in self._providers:
            return None
        if provider == SELF_HOSTED:
            try:
                hold = await self.pool.try_acquire()
            except CoordinationError as exc:
                # Never an unshared local lease instead: that is how two
                # processes end up on one server (§2.1). Overflow or busy.
                log.warning("self-hosted pool closed: %s", exc)
                return None
            if hold is None:
                return None
            lease = Lease(provider, hold.url, overflowed, self._released)
            self._holds[lease] = hold
            return lease
        return Lease(provider, None, overflowed, self._released)

    def _released(self, lease: Lease) -> None:
        self._active.discard(lease)
        hold = self._holds.pop(lease, None)
        if hold is not None:
            self.pool.release(hold)


__all__ = ["SELF_HOSTED", "Admission", "Lease", "ServerPool"]
