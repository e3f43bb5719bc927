"""One replica's connection to the coordination Redis: bounded requests and health.

Every request goes through :meth:`RedisLink.call`, which

- bounds it with ``timeout`` seconds (``PHONEBRIDGE_REDIS_TIMEOUT_SECONDS``):
  a hung Redis must not hold a voice webhook past Twilio's 15 s, and a
  webhook makes at most three requests;
- turns every failure into :class:`~phonebridge.errors.CoordinationError`;
- tracks health: ``up`` flips to False on a failure and back on the next
  success. While down, requests fail at once for ``retry_interval`` seconds
  (a circuit breaker) so an outage costs webhooks no waiting; the replica's
  tick (:mod:`.redis_state`) keeps probing, so recovery is noticed within
  about a second without any call paying for it.

redis-py's own retries are turned off: a retry with back-off inside the
client would blow the timeout budget, and our callers already have a safe
answer to a failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from phonebridge.coordination.metrics import CoordinationMetrics
from phonebridge.errors import CoordinationError
from phonebridge.models.redact import redact_url

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RETRY_INTERVAL = 1.0


class RedisLink:
    """A redis-py asyncio client with a timeout on every request and an up/down state."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        timeout: float,
        metrics: CoordinationMetrics,
        clock: Callable[[], float],
        prefix: str = "phonebridge:",
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        shown_url: str = "redis",
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.metrics = metrics
        self.prefix = prefix
        self._clock = clock
        self._retry_interval = retry_interval
        self._shown_url = shown_url
        self.up = True
        self.last_error = ""
        self._down_since: float | None = None
        self._last_failure = float("-inf")
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float,
        metrics: CoordinationMetrics,
        clock: Callable[[], float],
        prefix: str = "phonebridge:",
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
    ) -> RedisLink:
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return cls(
            client,
            timeout=timeout,
            metrics=metrics,
            clock=clock,
            prefix=prefix,
            retry_interval=retry_interval,
            shown_url=redact_url(url),
        )

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def call(self, op: str, request: Callable[[], Awaitable[T]], *, probe: bool = False) -> T:
        """Run ``request`` within the timeout; :class:`CoordinationError` on any failure.

        ``probe`` requests (the replica's tick) go out even while the circuit
        is open: they are how recovery is noticed.
        """
        if not self.up and not probe and self._clock() - self._last_failure < self._retry_interval:
            self.metrics.errors.labels(op).inc()
            raise CoordinationError(f"redis unreachable ({self.last_error}); retrying shortly")
        self.metrics.requests.labels(op).inc()
        try:
            async with asyncio.timeout(self.timeout):
                result = await request()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(op, exc)
            raise CoordinationError(f"redis {op} failed: {self.last_error}") from exc
        self._succeeded()
        return result

    def _failed(self, op: str, exc: BaseException) -> None:
        self.metrics.errors.labels(op).inc()
        self._last_failure = self._clock()
        # The exception text may quote the URL; show the redacted one only.
        self.last_error = (
            "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        ) + f" talking to {self._shown_url}"
        if self.up:
            self.up = False
            self._down_since = self._last_failure
            self.metrics.up.set(0)
            log.error("coordination store down: %s (%s)", self.last_error, op)

    def _succeeded(self) -> None:
        if not self.up:
            down_for = self._clock() - (self._down_since or self._clock())
            log.warning("coordination store back after %.1f s", down_for)
            self.up = True
            self._down_since = None
            self.metrics.up.set(1)

    async def eval(self, op: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a registered Lua script (EVALSHA, loading it on NOSCRIPT)."""
        return await self.call(op, lambda: script(keys=keys, args=args))

    def spawn(self, op: str, request: Callable[[], Awaitable[Any]]) -> None:
        """Run ``request`` in the background (releases: their callers cannot wait).

        A failure is counted and logged, never raised: what it would have
        freed expires with its TTL instead.
        """

        async def run() -> None:
            try:
                await self.call(op, request)
            except CoordinationError as exc:
                log.warning("%s left to expire: %s", op, exc)

        task = asyncio.get_running_loop().create_task(run(), name=f"redis:{op}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for the background requests in flight (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def aclose(self) -> None:
        await self.settle()
        await self.client.aclose()
