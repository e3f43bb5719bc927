"""Ringing hang-ups across replicas: Redis pub/sub on one channel (``ringing-hangups``).

A replica that hears a caller hang up while it rang (Twilio's status
callback, Telnyx's ``call.hangup``) and does not hold the call publishes the
call SID; every replica subscribes and withdraws the call if it holds it
pending (``Bridge.withdraw_signalled``). Pub/sub, not a key or a stream: the
signal matters only while the call is pending (at most the pending timeout),
so there is nothing to keep, and a replica that was not listening has
nothing to catch up on that its pending deadline does not already cover.

Failure contract (docs/deployment.md "Shared state in Redis"):

- ``publish`` goes through :meth:`RedisLink.call` (bounded, counted); a
  failure is logged and counted, never raised: the call pending elsewhere is
  then freed by its pending deadline.
- The subscriber holds one connection of its own. When it is lost (Redis
  stopped or restarted), or Redis stops answering the subscriber's PING
  (a hung Redis, a half-open connection), the subscription is dropped and
  renewed every ``retry_interval`` seconds until it is confirmed again. A
  signal published while a subscriber is not subscribed is **lost for it**
  (Redis pub/sub keeps nothing), and the pending deadline frees that call.
  Calls never wait on any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from phonebridge.coordination.base import Withdraw
from phonebridge.coordination.memory import deliver
from phonebridge.coordination.redis_link import DEFAULT_RETRY_INTERVAL, RedisLink
from phonebridge.errors import CoordinationError

log = logging.getLogger(__name__)

CHANNEL = "ringing-hangups"
PING_INTERVAL = 5.0
"""Seconds of silence on the subscription before it is PINGed; a PING not answered
within another interval renews the subscription (a hung or half-open connection)."""
MAX_SID_LENGTH = 128
"""Longer messages are not a call SID (ours are 34 characters, carriers' ids under 100)."""


class RedisRingingHangups:
    """Implements ``RingingHangups`` across replicas."""

    def __init__(
        self,
        link: RedisLink,
        *,
        clock: Callable[[], float],
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        ping_interval: float = PING_INTERVAL,
    ) -> None:
        self._link = link
        self._clock = clock
        self._retry_interval = retry_interval
        self._ping_interval = ping_interval
        self.channel = link.key(CHANNEL)
        self._listening = asyncio.Event()
        self._outage_logged = False

    @property
    def listening(self) -> bool:
        """Subscribed, confirmed by Redis: a signal published now reaches this replica."""
        return self._listening.is_set()

    async def until_listening(self) -> None:
        """Wait until :attr:`listening` (tests, start-up)."""
        await self._listening.wait()

    async def publish(self, call_sid: str) -> None:
        try:
            await self._link.call(
                "hangup_publish", lambda: self._link.client.publish(self.channel, call_sid)
            )
        except CoordinationError as exc:
            log.warning(
                "hang-up not told to other replicas (their pending deadline frees it): %s",
                exc,
                extra={"call_sid": call_sid},
            )

    async def run_forever(self, withdraw: Withdraw) -> None:
        while True:
            try:
                await self._listen(withdraw)
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(exc)
            await asyncio.sleep(self._retry_interval)

    async def _listen(self, withdraw: Withdraw) -> None:
        pubsub = self._link.client.pubsub()
        try:
            self._link.metrics.requests.labels("hangup_subscribe").inc()
            async with asyncio.timeout(self._link.timeout):
                await pubsub.subscribe(self.channel)
            await self._receive(pubsub, withdraw)
        finally:
            self._listening.clear()
            with contextlib.suppress(Exception):  # the connection may be dead already
                await pubsub.aclose()

    async def _receive(self, pubsub: PubSub, withdraw: Withdraw) -> None:
        heard = self._clock()  # the last time anything came from Redis
        pinged: float | None = None  # when the unanswered PING went out
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(
                timeout=min(1.0, self._ping_interval)
            )
            now = self._clock()
            if message is not None:
                heard, pinged = now, None
                await self._handle(message, withdraw)
            elif pinged is not None and now - pinged > self._ping_interval:
                raise TimeoutError("the subscription's PING went unanswered")
            elif pinged is None and now - heard >= self._ping_interval:
                await pubsub.ping()
                pinged = now

    async def _handle(self, message: dict[str, Any], withdraw: Withdraw) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self._subscribed()
        elif kind == "message":
            data = message.get("data")
            try:
                call_sid = data.decode() if isinstance(data, bytes) else str(data)
            except UnicodeDecodeError:
                call_sid = ""
            if not call_sid or len(call_sid) > MAX_SID_LENGTH:
                log.warning("ignored a ringing hang-up that is not a call SID")
                return
            await deliver(withdraw, call_sid)

    def _subscribed(self) -> None:
        self._listening.set()
        if self._outage_logged:
            self._outage_logged = False
            log.warning(
                "listening for other replicas' ringing hang-ups again; any told meanwhile "
                "were lost (their pending deadline frees those calls)"
            )

    def _lost(self, exc: BaseException) -> None:
        self._link.metrics.errors.labels("hangup_listen").inc()
        if not self._outage_logged:
            self._outage_logged = True
            log.error(
                "not listening for other replicas' ringing hang-ups (%s); retrying",
                "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__,
            )
