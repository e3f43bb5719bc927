"""Honouring a hosted provider's ``Retry-After`` (PROTOCOLS.md §3: "429 — honour ``Retry-After``").

One :class:`RetryAfterGate` per provider, shared by every session its factory
makes. A 429 closes the gate for the wait the provider asked for; until it
reopens, a new session fails at once with :class:`ModelRateLimited` (retryable,
so the call moves to its overflow provider or hears the fallback) without
touching the network: knocking again on a provider that asked us to wait only
prolongs the limit, and each refused upgrade costs the caller a round trip.

Pure: time is passed in. Sessions see a gate through the async
:class:`RetryGate` interface, so the gate can also live in Redis, shared by
every replica (phonebridge/coordination/: one replica's 429 holds all off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from phonebridge.errors import ModelRateLimited

DEFAULT_WAIT_SECONDS: Final[float] = 5.0
"""A 429 without (a readable) ``Retry-After`` still means "slow down": wait this long."""

MAX_WAIT_SECONDS: Final[float] = 300.0
"""A provider's wait is capped: a bogus ``Retry-After: 86400`` must not take a
provider out of service for a day; after five minutes one call probes it again."""


@dataclass(slots=True)
class RetryAfterGate:
    """Whether ``provider`` may be asked for a session now."""

    provider: str
    _reopens_at: float = 0.0

    def check(self, now: float) -> None:
        """Raise :class:`ModelRateLimited` while the provider's wait is running."""
        remaining = self._reopens_at - now
        if remaining > 0:
            raise ModelRateLimited(
                f"{self.provider}: rate limited, not asking again for {remaining:.1f} s",
                retry_after=remaining,
            )

    def hold(self, now: float, retry_after: float | None) -> None:
        """The provider answered 429: keep new sessions away for its wait."""
        wait = DEFAULT_WAIT_SECONDS if retry_after is None else retry_after
        self._reopens_at = max(self._reopens_at, now + min(max(wait, 0.0), MAX_WAIT_SECONDS))


class RetryGate(Protocol):
    """A provider's ``Retry-After`` wait as the sessions see it (one process or a cluster)."""

    provider: str

    async def check(self, now: float) -> None:
        """Raise :class:`ModelRateLimited` while the provider's wait is running."""
        ...

    async def hold(self, now: float, retry_after: float | None) -> None:
        """The provider answered 429: keep new sessions away for its wait."""
        ...


class LocalRetryGate:
    """One process's :class:`RetryAfterGate` behind the async :class:`RetryGate` interface."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.gate = RetryAfterGate(provider)

    async def check(self, now: float) -> None:
        self.gate.check(now)

    async def hold(self, now: float, retry_after: float | None) -> None:
        self.gate.hold(now, retry_after)
