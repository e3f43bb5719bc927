"""A bounded memory of one-time values (nonces, JWT ids) seen recently.

CARRIERS.md §2.7 and §3.5: a Plivo V3 signature binds a nonce and a Vonage
JWT carries a ``jti`` and ``iat``, but neither carrier's signature covers a
time the receiver can check against a tight window, so a captured request can
be replayed as is. Remembering each value for ``ttl`` seconds turns a replay
into a rejection. Sans-I/O: ``now`` is passed in. The memory is per process
(a replay that lands on another replica is still answered once there: the
call guard's replay check then refuses to answer a call twice).
"""

from __future__ import annotations

from collections import OrderedDict


class SeenValues:
    """``first_use(value, now)`` is True once per value within ``ttl`` seconds."""

    def __init__(self, ttl: float = 600.0, capacity: int = 100_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_use(self, value: str, now: float) -> bool:
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at + self.ttl > now and len(self._seen) < self.capacity:
                break
            del self._seen[oldest]
        if value in self._seen:
            return False
        self._seen[value] = now
        return True

    def __len__(self) -> int:
        return len(self._seen)
