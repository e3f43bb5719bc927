"""Replay memory, Retry-After gates, the replica registry and the tick, in Redis.

- **Replay memory**: ``SET answered:<sid> <replica> NX EX <one day>``: the
  first replica to answer a call SID wins; a replayed webhook on any replica
  is refused. Redis down: this replica's own memory decides (a replay then
  only succeeds on a replica that never saw the call, and the guard's limits
  still bound what it costs). The answer document is kept as
  ``answer:<sid>`` for the pending timeout and deleted when the stream claims
  the call: a Twilio retry that another replica receives is answered the
  same ``<Connect><Stream>`` (pointing at the holding replica); a replay
  after the claim is refused. Redis down: a retry elsewhere gets
  ``<Hangup/>`` (the caller's call fails, nothing is opened twice).
- **Retry-After gates**: a key per hosted provider that lives as long as the
  provider's wait; a 429 seen by one replica holds every replica off. Redis
  down: the local gate decides (at worst a replica asks once and is told to
  wait again).
- **Replicas**: a heartbeat in a sorted set scored by expiry; ids whose
  heartbeat is older than a TTL are dead (the call index uses this to mark a
  dead replica's unfinished calls ``crashed``).
- **The tick**: every TTL/3 one script heartbeats, renews this replica's
  leases and guard slots, and reads the pool (redis_scripts.TICK).
"""

from __future__ import annotations

import asyncio
import logging

from phonebridge.coordination import redis_scripts
from phonebridge.coordination.memory import MemoryReplay, MemoryRetryGate
from phonebridge.coordination.redis_guard import RedisCallGuard
from phonebridge.coordination.redis_leases import RedisServerLeases
from phonebridge.coordination.redis_link import RedisLink
from phonebridge.errors import CoordinationError, ModelRateLimited
from phonebridge.models.retry_gate import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS

log = logging.getLogger(__name__)

ANSWERED_TTL_SECONDS = 24 * 3600
"""How long a call SID's answer is remembered: longer than any call lasts; an
older replay is still bounded by the guard's limits."""


class RedisReplay:
    """Implements ``ReplayMemory`` across replicas."""

    def __init__(self, link: RedisLink, local: MemoryReplay, *, replica_id: str) -> None:
        self._link = link
        self.local = local
        self._replica_id = replica_id

    async def first_answer(self, call_sid: str) -> bool:
        local_first = self.local.first_answer_now(call_sid)
        key = self._link.key("answered", call_sid)
        try:
            created = await self._link.call(
                "replay",
                lambda: self._link.client.set(
                    key, self._replica_id, nx=True, ex=ANSWERED_TTL_SECONDS
                ),
            )
        except CoordinationError as exc:
            self._link.metrics.fallbacks.labels("replay").inc()
            log.warning("replay memory on this replica only: %s", exc)
            return local_first
        return bool(created) and local_first

    async def remember_answer(self, call_sid: str, document: str, ttl_seconds: float) -> None:
        key = self._link.key("answer", call_sid)
        ttl_ms = max(1, round(ttl_seconds * 1000))
        try:
            await self._link.call(
                "answer_keep", lambda: self._link.client.set(key, document, px=ttl_ms)
            )
        except CoordinationError as exc:
            self._link.metrics.fallbacks.labels("replay").inc()
            log.warning("answer not shared (a retry on another replica hangs up): %s", exc)

    async def previous_answer(self, call_sid: str) -> str | None:
        key = self._link.key("answer", call_sid)
        try:
            value = await self._link.call("answer_get", lambda: self._link.client.get(key))
        except CoordinationError as exc:
            self._link.metrics.fallbacks.labels("replay").inc()
            log.warning("answer of a retried webhook unknown: %s", exc)
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def forget_answer(self, call_sid: str) -> None:
        key = self._link.key("answer", call_sid)
        self._link.spawn("answer_forget", lambda: self._link.client.delete(key))


class RedisRetryGate:
    """Implements ``RetryGate`` across replicas for one hosted provider."""

    def __init__(self, link: RedisLink, provider: str) -> None:
        self._link = link
        self.provider = provider
        self.local = MemoryRetryGate(provider)
        self._key = link.key("gate", provider)
        self._hold = link.client.register_script(redis_scripts.GATE_HOLD)

    async def check(self, now: float) -> None:
        await self.local.check(now)  # our own 429s first: no round trip needed
        try:
            remaining_ms = int(
                await self._link.call("gate_check", lambda: self._link.client.pttl(self._key))
            )
        except CoordinationError as exc:
            self._link.metrics.fallbacks.labels("gate").inc()
            log.debug("Retry-After gate on this replica only: %s", exc)
            return
        if remaining_ms > 0:
            remaining = remaining_ms / 1000
            raise ModelRateLimited(
                f"{self.provider}: rate limited (seen by another replica), not asking again "
                f"for {remaining:.1f} s",
                retry_after=remaining,
            )

    async def hold(self, now: float, retry_after: float | None) -> None:
        await self.local.hold(now, retry_after)
        wait = DEFAULT_WAIT_SECONDS if retry_after is None else retry_after
        wait_ms = round(min(max(wait, 0.0), MAX_WAIT_SECONDS) * 1000)
        if wait_ms <= 0:
            return
        try:
            await self._link.eval("gate_hold", self._hold, [self._key], [wait_ms])
        except CoordinationError as exc:
            self._link.metrics.fallbacks.labels("gate").inc()
            log.warning("%s's Retry-After not shared with other replicas: %s", self.provider, exc)


class RedisReplicas:
    """Implements ``ReplicaRegistry``: heartbeats written by :class:`RedisTicker`."""

    def __init__(self, link: RedisLink, replica_id: str) -> None:
        self._link = link
        self.replica_id = replica_id
        self._alive = link.client.register_script(redis_scripts.ALIVE)

    @property
    def key(self) -> str:
        return self._link.key("replicas")

    async def alive_replicas(self) -> set[str]:
        """Raises :class:`CoordinationError` if Redis cannot say (then nobody is known dead)."""
        ids = await self._link.eval("replicas_alive", self._alive, [self.key], [])
        return {i.decode() if isinstance(i, bytes) else str(i) for i in ids}

    async def leave(self) -> None:
        """Shutdown: drop our heartbeat at once instead of letting it expire."""
        try:
            await self._link.call(
                "replica_leave", lambda: self._link.client.zrem(self.key, self.replica_id)
            )
        except CoordinationError as exc:
            log.warning("heartbeat left to expire: %s", exc)


class RedisTicker:
    """The replica's periodic round trip (heartbeat + renewals + pool snapshot)."""

    def __init__(
        self,
        link: RedisLink,
        *,
        leases: RedisServerLeases,
        guard: RedisCallGuard | None,
        replicas: RedisReplicas,
        ttl_seconds: float,
    ) -> None:
        self._link = link
        self._leases = leases
        self._guard = guard
        self._replicas = replicas
        self.interval = ttl_seconds / 3
        self._script = link.client.register_script(redis_scripts.TICK)

    async def tick(self) -> None:
        """One round trip; :class:`CoordinationError` if Redis did not answer."""
        lease_keys, tokens = self._leases.renewal()
        slot_keys, sids = self._guard.renewal() if self._guard is not None else ([], [])
        pool = self._leases.pool_keys()
        link = self._link
        try:
            answer = await link.call(
                "tick",
                lambda: self._script(
                    keys=[
                        self._replicas.key,
                        link.key("armed"),
                        link.key("quarantine"),
                        *lease_keys,
                        *slot_keys,
                        *pool,
                    ],
                    args=[
                        self._replicas.replica_id,
                        self._leases.ttl_ms,
                        len(lease_keys),
                        len(slot_keys),
                        len(pool) // 2,
                        *tokens,
                        *sids,
                    ],
                ),
                probe=True,
            )
        except CoordinationError:
            self._leases.renew_failed()
            raise
        results = [int(value) for value in answer]
        self._leases.renewed(tokens, results[: len(tokens)], results[-2], results[-1])

    async def run_forever(self) -> None:
        """Tick every TTL/3; while Redis is down, probe every second to notice it back."""
        while True:
            try:
                await self.tick()
                delay = self.interval
            except CoordinationError as exc:
                log.debug("tick failed: %s", exc)
                delay = min(self.interval, 1.0)
            await asyncio.sleep(delay)
