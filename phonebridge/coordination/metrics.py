"""Prometheus metrics of the coordination store (registered on the bridge's registry).

What each means when it moves is in docs/deployment.md "Shared state in Redis".
Labels are fixed vocabularies (operation names), never a caller or a URL.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class CoordinationMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.up = Gauge(
            "phonebridge_coordination_up",
            "1 while the shared coordination store (Redis) answers, 0 while it does not "
            "(always 1 for the in-memory store)",
            registry=r,
        )
        self.requests = Counter(
            "phonebridge_coordination_requests",
            "Round trips to the coordination store, by operation",
            ["op"],
            registry=r,
        )
        self.errors = Counter(
            "phonebridge_coordination_errors",
            "Coordination store requests that failed or timed out, by operation",
            ["op"],
            registry=r,
        )
        self.fallbacks = Counter(
            "phonebridge_coordination_fallbacks",
            "Decisions taken on this replica's local state because the store was down "
            "(guard, replay, gate)",
            ["op"],
            registry=r,
        )
        self.lease_renew_failures = Counter(
            "phonebridge_lease_renew_failures",
            "Lease renewals that could not reach the store (the call goes on; retried)",
            registry=r,
        )
        self.leases_lost = Counter(
            "phonebridge_leases_lost",
            "Renewals that found a held server leased to someone else: two sessions may "
            "share one GPU server (prompt-swap hazard). Alert on any increase.",
            registry=r,
        )
        self.leases_reclaimed = Counter(
            "phonebridge_leases_reclaimed",
            "Renewals that found their lease key gone (store restarted or the TTL ran out) "
            "and took it back",
            registry=r,
        )
        self.up.set(1)
