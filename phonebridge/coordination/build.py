"""Assemble the coordination a process uses: in memory, or Redis shared with other replicas."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from phonebridge.calls.guard import GuardLimits, TollFraudGuard
from phonebridge.coordination.base import (
    CallGuard,
    ReplayMemory,
    ReplicaRegistry,
    RetryGate,
    RingingHangups,
    ServerLeases,
)
from phonebridge.coordination.memory import (
    MemoryCallGuard,
    MemoryReplay,
    MemoryReplicas,
    MemoryRetryGate,
    MemoryRingingHangups,
    ServerPool,
)
from phonebridge.coordination.metrics import CoordinationMetrics
from phonebridge.coordination.redis_guard import RedisCallGuard
from phonebridge.coordination.redis_hangups import RedisRingingHangups
from phonebridge.coordination.redis_leases import RedisServerLeases
from phonebridge.coordination.redis_link import RedisLink
from phonebridge.coordination.redis_state import (
    RedisReplay,
    RedisReplicas,
    RedisRetryGate,
    RedisTicker,
)
from phonebridge.errors import CoordinationError

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "phonebridge:"


def new_replica_id() -> str:
    """A random replica id, for a process that was not given one (PHONEBRIDGE_REPLICA_ID)."""
    return "r-" + secrets.token_hex(4)


@dataclass(slots=True)
class Coordination:
    """Everything shared, as this process sees it."""

    replica_id: str
    leases: ServerLeases
    guard: CallGuard | None
    replay: ReplayMemory
    replicas: ReplicaRegistry
    metrics: CoordinationMetrics
    hangups: RingingHangups = field(default_factory=MemoryRingingHangups)
    """Calls that ended while they rang, told to every replica (a background subscriber)."""
    link: RedisLink | None = None
    ticker: RedisTicker | None = None
    _gates: dict[str, RetryGate] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return "memory" if self.link is None else "redis"

    @property
    def up(self) -> bool:
        return self.link is None or self.link.up

    def status(self) -> str:
        """One line for ``/readyz``: which store, and whether it answers."""
        if self.link is None:
            return "coordination: memory"
        if self.link.up:
            return "coordination: redis up"
        return f"coordination: redis DOWN ({self.link.last_error}); self-hosted pool closed"

    def gate(self, provider: str) -> RetryGate:
        """The Retry-After gate of ``provider`` (one per provider, shared by its sessions)."""
        gate = self._gates.get(provider)
        if gate is None:
            if self.link is None:
                gate = MemoryRetryGate(provider)
            else:
                gate = RedisRetryGate(self.link, provider)
            self._gates[provider] = gate
        return gate

    async def alive_replicas(self) -> set[str]:
        """Replica ids whose heartbeat is fresh (raises CoordinationError if Redis cannot say)."""
        return await self.replicas.alive_replicas()

    async def start(self) -> None:
        """A first tick, so readiness and the pool are known before the first call."""
        if self.ticker is not None:
            try:
                await self.ticker.tick()
            except CoordinationError as exc:
                log.error("coordination store unreachable at start-up: %s", exc)

    async def run_forever(self) -> None:
        """The background tick (heartbeat and renewals); returns at once in memory."""
        if self.ticker is not None:
            await self.ticker.run_forever()

    async def aclose(self) -> None:
        """After the drain: let releases land, drop the heartbeat, close the connections."""
        if self.link is None:
            return
        await self.link.settle()
        if isinstance(self.replicas, RedisReplicas):
            await self.replicas.leave()
        await self.link.aclose()


def build_coordination(
    *,
    redis_url: str | None,
    personaplex_urls: Iterable[str],
    guard_limits: GuardLimits | None,
    clock: Callable[[], float],
    registry: CollectorRegistry | None = None,
    replica_id: str | None = None,
    lease_ttl_seconds: float = 10.0,
    redis_timeout_seconds: float = 0.5,
    prefix: str = DEFAULT_PREFIX,
) -> Coordination:
    """In memory when ``redis_url`` is None (one process), else shared through Redis.

    Nothing connects here: the first request (or :meth:`Coordination.start`) does.
    """
    replica = replica_id or new_replica_id()
    metrics = CoordinationMetrics(registry)
    local_guard = (
        MemoryCallGuard(TollFraudGuard(guard_limits), clock=clock)
        if guard_limits is not None
        else None
    )
    if redis_url is None:
        return Coordination(
            replica_id=replica,
            leases=ServerPool(personaplex_urls, clock=clock),
            guard=local_guard,
            replay=MemoryReplay(),
            replicas=MemoryReplicas(replica),
            metrics=metrics,
        )
    link = RedisLink.from_url(
        redis_url, timeout=redis_timeout_seconds, metrics=metrics, clock=clock, prefix=prefix
    )
    leases = RedisServerLeases(
        link, personaplex_urls, replica_id=replica, ttl_seconds=lease_ttl_seconds
    )
    guard = (
        RedisCallGuard(link, local_guard, slot_ttl_seconds=lease_ttl_seconds)
        if local_guard is not None
        else None
    )
    replicas = RedisReplicas(link, replica)
    return Coordination(
        replica_id=replica,
        leases=leases,
        guard=guard,
        replay=RedisReplay(link, MemoryReplay(), replica_id=replica),
        replicas=replicas,
        metrics=metrics,
        hangups=RedisRingingHangups(link, clock=clock),
        link=link,
        ticker=RedisTicker(
            link, leases=leases, guard=guard, replicas=replicas, ttl_seconds=lease_ttl_seconds
        ),
    )
