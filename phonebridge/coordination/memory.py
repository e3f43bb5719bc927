"""In-memory coordination: one process owns everything (the embedded default).

These are today's single-process behaviours behind the :mod:`.base`
interfaces. Nothing here awaits anything real, so acquire/check/record run
without yielding to the event loop: no locks are needed. The Redis
implementations keep one of these as their local fallback and shadow.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable, Set

from phonebridge.calls.guard import (
    AnsweredCalls,
    GuardDecision,
    TollFraudGuard,
    caller_key,
)
from phonebridge.coordination.base import ServerHold, Withdraw
from phonebridge.models.retry_gate import LocalRetryGate

log = logging.getLogger(__name__)


class ServerPool:
    """Exclusive leases over the self-hosted servers of ``PERSONAPLEX_URLS``, in one process.

    A server that failed to hand-shake may still be stuck in a session nobody
    owns (§2.5: it hangs silently), so it is rested for ``cooldown_seconds``
    before it is offered again.
    """

    def __init__(
        self, urls: Iterable[str], *, clock: Callable[[], float], cooldown_seconds: float = 30.0
    ) -> None:
        self._urls = tuple(dict.fromkeys(urls))
        self._busy: dict[str, str] = {}  # url -> token of its hold
        self._resting_until: dict[str, float] = {}
        self._clock = clock
        self._cooldown = cooldown_seconds

    @property
    def size(self) -> int:
        return len(self._urls)

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    def held_urls(self) -> Set[str]:
        return set(self._busy)

    @property
    def in_use(self) -> int:
        return len(self._busy)

    @property
    def available(self) -> bool:
        return True

    def free_count(self) -> int:
        now = self._clock()
        return sum(1 for url in self._urls if self._is_free(url, now))

    def _is_free(self, url: str, now: float) -> bool:
        return url not in self._busy and self._resting_until.get(url, 0.0) <= now

    def acquire_now(self) -> ServerHold | None:
        """:meth:`try_acquire` without the coroutine (it never waits)."""
        now = self._clock()
        for url in self._urls:
            if self._is_free(url, now):
                token = secrets.token_hex(8)
                self._busy[url] = token
                return ServerHold(url, token)
        return None

    async def try_acquire(self) -> ServerHold | None:
        return self.acquire_now()

    def release(self, hold: ServerHold) -> None:
        if self._busy.get(hold.url) == hold.token:  # a stale hold frees nothing
            del self._busy[hold.url]

    def rest_now(self, url: str) -> None:
        self._resting_until[url] = self._clock() + self._cooldown

    async def rest(self, url: str) -> None:
        self.rest_now(url)


class MemoryCallGuard:
    """The toll-fraud guard of one process: :class:`TollFraudGuard` plus its slot table.

    A confirmed call holds a concurrency slot until :meth:`release` (wired to
    its lease, so "this call still holds a slot" has one source of truth).
    """

    def __init__(self, guard: TollFraudGuard, *, clock: Callable[[], float]) -> None:
        self.guard = guard
        self._clock = clock
        self._slots: dict[str, set[str]] = {}  # caller -> call SIDs holding a slot

    def active_calls(self, caller: str) -> int:
        return len(self._slots.get(caller, ()))

    def decide(self, from_number: str) -> GuardDecision:
        caller = caller_key(from_number)
        return self.guard.check(from_number, self._clock(), active_calls=self.active_calls(caller))

    async def admit(self, from_number: str, call_sid: str) -> GuardDecision:
        return self.decide(from_number)

    def confirm(self, caller: str, call_sid: str) -> None:
        self.guard.record(caller, self._clock())
        self._slots.setdefault(caller, set()).add(call_sid)

    async def cancel(self, caller: str, call_sid: str) -> None:
        return None  # nothing was counted before confirm()

    def release(self, caller: str, call_sid: str) -> None:
        slots = self._slots.get(caller)
        if slots is not None:
            slots.discard(call_sid)
            if not slots:
                del self._slots[caller]


class MemoryReplay:
    """Replay memory of one process (bounded, newest first kept)."""

    def __init__(self, answered: AnsweredCalls | None = None) -> None:
        self.answered = answered or AnsweredCalls()

    def first_answer_now(self, call_sid: str) -> bool:
        if call_sid in self.answered:
            return False
        self.answered.add(call_sid)
        return True

    async def first_answer(self, call_sid: str) -> bool:
        return self.first_answer_now(call_sid)

    # One process holds every call it answered, so a retry finds the pending
    # call itself (Bridge.kept_answer looks there first): nothing to keep.
    async def remember_answer(self, call_sid: str, document: str, ttl_seconds: float) -> None:
        return None

    async def previous_answer(self, call_sid: str) -> str | None:
        return None

    def forget_answer(self, call_sid: str) -> None:
        return None


MemoryRetryGate = LocalRetryGate
"""One process's Retry-After gate (models/retry_gate.py)."""


class MemoryReplicas:
    """One process: the only replica is this one, and it is alive."""

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id

    async def alive_replicas(self) -> set[str]:
        return {self.replica_id}


class MemoryRingingHangups:
    """Ringing hang-ups within one process: every running subscriber gets each SID.

    One process holds every call it answered, so its own status callback
    already found the call (the bridge withdraws locally first); this
    delivers the signal anyway, so one process behaves as a cluster of one.
    Workers of ``serve --workers`` without Redis are separate processes with
    their own instance each: nothing crosses between them (each worker's
    status callback path is its own, docs/webhooks.md).
    A SID published while no subscriber runs is lost, as with Redis pub/sub.
    """

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[str]] = set()

    @property
    def listening(self) -> bool:
        return bool(self._subscribers)

    async def publish(self, call_sid: str) -> None:
        for queue in self._subscribers:
            queue.put_nowait(call_sid)

    async def run_forever(self, withdraw: Withdraw) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                await deliver(withdraw, await queue.get())
        finally:
            self._subscribers.discard(queue)


async def deliver(withdraw: Withdraw, call_sid: str) -> None:
    """Hand one signalled SID over; a failure is this call's, logged, never the subscriber's."""
    try:
        await withdraw(call_sid)
    except Exception:
        log.exception(
            "withdrawing a call that hung up while ringing failed", extra={"call_sid": call_sid}
        )


__all__ = [
    "MemoryCallGuard",
    "MemoryReplay",
    "MemoryReplicas",
    "MemoryRetryGate",
    "MemoryRingingHangups",
    "ServerPool",
    "deliver",
]
