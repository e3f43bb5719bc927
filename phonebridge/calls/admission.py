"""Admission: who may take a call, on which model, with which server.

A self-hosted PersonaPlex server runs one conversation at a time and *hangs*
a second connection silently (PROTOCOLS.md §2.5) — and, through a server bug,
may even run it with another caller's prompt. So the bridge never queues on a
busy server: it holds an exclusive :class:`Lease` per server in a
:class:`ServerPool`, and a call that finds no free server goes to the
persona's overflow provider or hears the busy message.

Hosted providers (PolarGrid, fal) have no per-server limit here; the
per-instance cap on concurrent calls bounds them.

Everything here is synchronous and single-threaded (one event loop), so no
locks are needed: acquire and release never await.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from phonebridge.errors import CapacityError

SELF_HOSTED = "personaplex"


@dataclass(eq=False, slots=True)
class Lease:
    """The right to run one call on ``provider`` (and ``server_url`` if self-hosted)."""

    provider: str
    server_url: str | None
    overflowed: bool
    _release: Callable[[Lease], None] = field(repr=False)
    released: bool = False

    def release(self) -> None:
        """Give the slot back. Idempotent: every exit path of a call may call it."""
        if self.released:
            return
        self.released = True
        self._release(self)


class ServerPool:
    """Exclusive leases over the self-hosted servers of ``PERSONAPLEX_URLS``.

    A server that failed to hand-shake may still be stuck in a session nobody
    owns (§2.5: it hangs silently), so it is rested for ``cooldown_seconds``
    before it is offered again.
    """

    def __init__(
        self, urls: Iterable[str], *, clock: Callable[[], float], cooldown_seconds: float = 30.0
    ) -> None:
        self._urls = tuple(dict.fromkeys(urls))
        self._busy: set[str] = set()
        self._resting_until: dict[str, float] = {}
        self._clock = clock
        self._cooldown = cooldown_seconds

    @property
    def size(self) -> int:
        return len(self._urls)

    @property
    def in_use(self) -> int:
        return len(self._busy)

    def free_count(self) -> int:
        now = self._clock()
        return sum(1 for url in self._urls if self._is_free(url, now))

    def _is_free(self, url: str, now: float) -> bool:
        return url not in self._busy and self._resting_until.get(url, 0.0) <= now

    def try_acquire(self) -> str | None:
        """A free server's URL, now marked busy; ``None`` if every server is taken."""
        now = self._clock()
        for url in self._urls:
            if self._is_free(url, now):
                self._busy.add(url)
                return url
        return None

    def release(self, url: str) -> None:
        self._busy.discard(url)

    def rest(self, url: str) -> None:
        """Keep ``url`` out of rotation for a while (it may be stuck in a session)."""
        self._resting_until[url] = self._clock() + self._cooldown


class Admission:
    """Grants leases, honouring the instance cap, the server pool and overflow."""

    def __init__(
        self,
        pool: ServerPool,
        *,
        available_providers: Iterable[str],
        max_calls: int,
    ) -> None:
        self.pool = pool
        self._providers = frozenset(available_providers)
        self._max_calls = max_calls
        self._active: set[Lease] = set()
        self.draining = False

    @property
    def active_calls(self) -> int:
        return len(self._active)

    def can_take_calls(self) -> bool:
        """Readiness: not draining, under the cap, and some provider can take a call."""
        if self.draining or len(self._active) >= self._max_calls:
            return False
        hosted = self._providers - {SELF_HOSTED}
        return bool(hosted) or self.pool.free_count() > 0

    def acquire(self, provider: str, overflow: str | None) -> Lease:
        """A lease for ``provider``, else ``overflow``; :class:`CapacityError` if neither."""
        if self.draining:
            raise CapacityError("draining: not taking new calls")
        if len(self._active) >= self._max_calls:
            raise CapacityError(f"at the per-instance cap of {self._max_calls} concurrent calls")
        lease = self._try(provider, overflowed=False)
        if lease is None and overflow is not None:
            lease = self._try(overflow, overflowed=True)
        if lease is None:
            raise CapacityError(
                f"no free {provider} slot"
                + (f" and overflow {overflow} unavailable" if overflow else " and no overflow")
            )
        self._active.add(lease)
        return lease

    def move_to_overflow(self, lease: Lease, overflow: str) -> Lease:
        """Trade ``lease`` (its provider failed to open) for one on ``overflow``.

        The old lease is released either way; :class:`CapacityError` if the
        overflow provider cannot take the call.
        """
        lease.release()
        moved = self._try(overflow, overflowed=True) if not self.draining else None
        if moved is None:
            raise CapacityError(f"overflow {overflow} unavailable")
        self._active.add(moved)
        return moved

    def _try(self, provider: str, *, overflowed: bool) -> Lease | None:
        if provider not in self._providers:
            return None
        if provider == SELF_HOSTED:
            url = self.pool.try_acquire()
            if url is None:
                return None
            return Lease(provider, url, overflowed, self._released)
        return Lease(provider, None, overflowed, self._released)

    def _released(self, lease: Lease) -> None:
        self._active.discard(lease)
        if lease.server_url is not None:
            self.pool.release(lease.server_url)
