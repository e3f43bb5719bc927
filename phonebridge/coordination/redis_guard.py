"""The toll-fraud guard across replicas: calls/guard.py's limits, kept in Redis.

Why a Lua script and not the ``limits`` package (considered first, as the
issue asks): its moving window is the same sliding log we keep, but

- a check is ``test()`` then ``hit()``, one round trip each per limit, and not
  atomic, so N replicas admitting at once overshoot a limit by up to N;
- it has no refund, while a call that finds no free server must not use up
  its caller's quota (calls/guard.py counts admitted calls only);
- it has no concurrency counter, and the per-caller one must not leak when a
  replica dies holding it.

One script (redis_scripts.GUARD_ADMIT) checks all three limits and reserves
the call in all of them atomically, in one round trip, on Redis's clock;
:meth:`RedisCallGuard.cancel` refunds a reservation. A caller's concurrent
calls are a sorted set of call SIDs scored by an expiry that the replica's
tick renews while the call lives, so a dead replica's calls drop out within
the lease TTL. Caller numbers are hashed in key names (personal data).

**Redis down: degrade to this replica's own limits** (neither fail-open nor
fail-closed). Failing closed would turn a Redis outage into "every caller
hears busy" on a business line; failing open would leave the toll-fraud
limits off while the hosted overflow bills. Each replica shadows every call
it admits in a local :class:`~phonebridge.coordination.memory.MemoryCallGuard`,
so during an outage the limits still hold per replica: the cluster admits at
most N times each limit (N replicas), still bounded by each replica's
``PHONEBRIDGE_MAX_CALLS``. Each such decision counts in
``phonebridge_coordination_fallbacks_total{op="guard"}``.
"""

from __future__ import annotations

import hashlib
import logging

from phonebridge.calls.guard import (
    Admitted,
    GuardDecision,
    GuardLimits,
    GuardReason,
    Refused,
    caller_key,
)
from phonebridge.coordination import redis_scripts
from phonebridge.coordination.memory import MemoryCallGuard
from phonebridge.coordination.redis_link import RedisLink
from phonebridge.errors import CoordinationError

log = logging.getLogger(__name__)


class RedisCallGuard:
    """Implements ``CallGuard`` on Redis, with a local shadow for outages."""

    def __init__(self, link: RedisLink, local: MemoryCallGuard, *, slot_ttl_seconds: float) -> None:
        self._link = link
        self.local = local
        self.limits: GuardLimits = local.guard.limits
        self._slot_ttl_ms = max(1, round(slot_ttl_seconds * 1000))
        self._admit = link.client.register_script(redis_scripts.GUARD_ADMIT)
        self._cancel = link.client.register_script(redis_scripts.GUARD_CANCEL)
        # call SID -> caller, for calls reserved in Redis whose slot is still held:
        # what the tick renews.
        self.slots: dict[str, str] = {}
        self._shared: set[str] = set()  # reserved in Redis, not yet confirmed or cancelled

    def _keys(self, caller: str) -> list[str]:
        digest = hashlib.sha256(caller.encode()).hexdigest()[:32]
        return [
            self._link.key("guard", "rate", digest),
            self._link.key("guard", "global"),
            self.active_key(caller),
        ]

    def active_key(self, caller: str) -> str:
        return self._link.key("guard", "active", hashlib.sha256(caller.encode()).hexdigest()[:32])

    async def admit(self, from_number: str, call_sid: str) -> GuardDecision:
        caller = caller_key(from_number)
        limits = self.limits
        try:
            answer = await self._link.eval(
                "guard_admit",
                self._admit,
                self._keys(caller),
                [
                    call_sid,
                    limits.caller_calls_per_window,
                    round(limits.caller_window_seconds * 1000),
                    limits.global_calls_per_minute,
                    limits.caller_max_concurrent,
                    self._slot_ttl_ms,
                ],
            )
        except CoordinationError as exc:
            self._link.metrics.fallbacks.labels("guard").inc()
            log.warning("toll-fraud guard on this replica's own limits: %s", exc)
            return self.local.decide(from_number)
        code = int(answer[0])
        if code == 0:
            self._shared.add(call_sid)
            return Admitted(caller)
        value = int(answer[1])
        if code == 1:
            return Refused(
                caller,
                GuardReason.CALLER_CONCURRENT,
                f"caller already has {value} call(s) in progress "
                f"(limit {limits.caller_max_concurrent})",
            )
        if code == 2:
            return Refused(
                caller,
                GuardReason.CALLER_RATE,
                f"caller reached {limits.caller_calls_per_window} call(s) per "
                f"{limits.caller_window_seconds:g} s",
                retry_after=value / 1000,
            )
        return Refused(
            caller,
            GuardReason.GLOBAL_RATE,
            f"cluster reached {limits.global_calls_per_minute} new call(s) per minute",
            retry_after=value / 1000,
        )

    def confirm(self, caller: str, call_sid: str) -> None:
        self.local.confirm(caller, call_sid)  # the shadow, for an outage
        if call_sid in self._shared:
            self._shared.discard(call_sid)
            if self.limits.caller_max_concurrent:
                self.slots[call_sid] = caller

    async def cancel(self, caller: str, call_sid: str) -> None:
        if call_sid not in self._shared:
            return  # admitted locally during an outage: nothing reserved in Redis
        self._shared.discard(call_sid)
        try:
            await self._link.eval("guard_cancel", self._cancel, self._keys(caller), [call_sid])
        except CoordinationError as exc:
            # The reservation stays until its window ends (a slot: its TTL).
            log.warning("could not give back a guard reservation: %s", exc)

    def release(self, caller: str, call_sid: str) -> None:
        self.local.release(caller, call_sid)
        if self.slots.pop(call_sid, None) is None:
            return
        key = self.active_key(caller)
        self._link.spawn("guard_release", lambda: self._link.client.zrem(key, call_sid))

    def renewal(self) -> tuple[list[str], list[str]]:
        """Slot keys and call SIDs to renew now."""
        held = list(self.slots.items())
        return [self.active_key(caller) for _, caller in held], [sid for sid, _ in held]
