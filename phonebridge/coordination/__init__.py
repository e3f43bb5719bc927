"""Shared coordination: what replicas must agree on, behind small interfaces.

GPU leases, the toll-fraud guard, the answered-webhook replay memory, the
hosted providers' Retry-After gates and the replica registry each have an
interface (:mod:`.base`) with two implementations: in memory (:mod:`.memory`,
one process, the embedded default when ``PHONEBRIDGE_REDIS_URL`` is unset)
and Redis (a cluster of replicas). :func:`.build.build_coordination` picks
one from the settings; docs/deployment.md "Shared state in Redis" tells the
operator what each does when Redis fails.
"""
