"""GPU leases shared by every replica: one Redis key per self-hosted server.

``SET lease:<url> <token> NX PX <ttl>`` (inside the ACQUIRE script, which
also skips resting servers and honours the quarantine, redis_scripts.py)
grants a server to exactly one call in the whole cluster. The token is
unique per hold (``<replica id>:<random>``), so a release is a
compare-and-delete that cannot free a server somebody else holds now, and an
operator reading the key sees which replica holds it.

The holder renews its keys while the call lives: the replica's tick
(:class:`~phonebridge.coordination.redis_state.RedisTicker`) renews all of
them in one round trip every TTL/3. A replica killed with ``kill -9`` stops
renewing and its servers come free within the TTL.

What a renewal can find, and what happens (decided here, docs/deployment.md):

- *renewed*: nothing to do;
- *key gone* (Redis restarted, or the replica could not reach Redis for a
  whole TTL): the key is taken back with our token, a warning is logged and
  ``phonebridge_leases_reclaimed_total`` counts it;
- *someone else's token*: the server was granted to another call while ours
  still runs on it (possible only after our renewals failed for a whole TTL,
  e.g. a network partition). That is the prompt-swap hazard (§2.1): it is
  logged as an error and counted in ``phonebridge_leases_lost_total`` (alert
  on any increase). The call is *not* ended: ending it cannot undo what the
  other connection already did to the server's shared state, and it would cut
  a caller who may be unaffected; the operator is told instead. Our key is
  left alone (the other holder's lease stays valid) and no longer renewed.
- *Redis unreachable*: counted in ``phonebridge_lease_renew_failures_total``;
  the call goes on and the next tick tries again.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Set

from phonebridge.coordination import redis_scripts
from phonebridge.coordination.base import ServerHold
from phonebridge.coordination.redis_link import RedisLink
from phonebridge.errors import CoordinationError

log = logging.getLogger(__name__)

RENEWED, RECLAIMED, LOST = 1, 2, 0


class RedisServerLeases:
    """The self-hosted pool as every replica sees it (implements ``ServerLeases``)."""

    def __init__(
        self,
        link: RedisLink,
        urls: Iterable[str],
        *,
        replica_id: str,
        ttl_seconds: float,
        cooldown_seconds: float = 30.0,
    ) -> None:
        self._link = link
        self._urls = tuple(dict.fromkeys(urls))
        self._replica_id = replica_id
        self.ttl_ms = max(1, round(ttl_seconds * 1000))
        self._cooldown_ms = max(1, round(cooldown_seconds * 1000))
        self._acquire = link.client.register_script(redis_scripts.ACQUIRE)
        self._release = link.client.register_script(redis_scripts.RELEASE)
        self._rest = link.client.register_script(redis_scripts.REST)
        self.held: dict[str, str] = {}  # url -> token, what the tick renews
        self._free = 0  # as of the last tick
        self.quarantine_ms = 0  # as of the last tick or acquire

    # -- keys -----------------------------------------------------------------

    def lease_key(self, url: str) -> str:
        return self._link.key("lease", url)

    def rest_key(self, url: str) -> str:
        return self._link.key("rest", url)

    def pool_keys(self) -> list[str]:
        """Every lease key, then every rest key (the order the scripts expect)."""
        return [self.lease_key(u) for u in self._urls] + [self.rest_key(u) for u in self._urls]

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    def held_urls(self) -> Set[str]:
        return set(self.held)

    # -- ServerLeases -----------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self._urls)

    @property
    def in_use(self) -> int:
        return len(self.held)

    @property
    def available(self) -> bool:
        return self._link.up

    def free_count(self) -> int:
        if not self._link.up or self.quarantine_ms > 0:
            return 0
        return self._free

    async def try_acquire(self) -> ServerHold | None:
        if not self._urls:
            return None
        token = f"{self._replica_id}:{secrets.token_hex(8)}"
        index = int(
            await self._link.eval(
                "lease_acquire",
                self._acquire,
                [self._link.key("armed"), self._link.key("quarantine"), *self.pool_keys()],
                [token, self.ttl_ms, len(self._urls)],
            )
        )
        if index < 0:
            self.quarantine_ms = self.ttl_ms
            log.info("self-hosted pool in quarantine after a Redis restart: no server granted")
            return None
        if index == 0:
            return None
        url = self._urls[index - 1]
        self.held[url] = token
        return ServerHold(url, token)

    def release(self, hold: ServerHold) -> None:
        if self.held.get(hold.url) != hold.token:
            return  # not ours any more (lost): never delete another holder's key
        del self.held[hold.url]
        key = self.lease_key(hold.url)
        self._link.spawn("lease_release", lambda: self._release(keys=[key], args=[hold.token]))

    async def rest(self, url: str) -> None:
        try:
            await self._link.eval(
                "lease_rest", self._rest, [self.rest_key(url)], [self._cooldown_ms]
            )
        except CoordinationError as exc:
            # The server stays in rotation; the next call that finds it stuck rests it again.
            log.warning("could not rest %s cluster-wide: %s", url, exc)

    # -- the tick ---------------------------------------------------------------

    def renewal(self) -> tuple[list[str], list[str]]:
        """The keys and tokens to renew now (a snapshot: releases may race the tick)."""
        held = list(self.held.items())
        return [self.lease_key(url) for url, _ in held], [token for _, token in held]

    def renewed(self, tokens: list[str], results: list[int], free: int, quarantine_ms: int) -> None:
        """Apply a tick's answers (see the module docstring for what each means)."""
        self._free = free
        self.quarantine_ms = quarantine_ms
        by_token = {token: url for url, token in self.held.items()}
        metrics = self._link.metrics
        for token, result in zip(tokens, results, strict=True):
            url = by_token.get(token)
            if url is None:
                continue  # released while the tick was in flight
            if result == RECLAIMED:
                metrics.leases_reclaimed.inc()
                log.warning("lease on %s had vanished from Redis; taken back", url)
            elif result == LOST:
                metrics.leases_lost.inc()
                del self.held[url]
                log.error(
                    "lease on %s is held by another call: two sessions may share this "
                    "server (prompt-swap hazard, PROTOCOLS.md §2.1); the call goes on",
                    url,
                )

    def renew_failed(self) -> None:
        if self.held:
            self._link.metrics.lease_renew_failures.inc()
