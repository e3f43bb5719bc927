"""Post-call webhook delivery (issue 15, "Post-call webhook"; docs/webhooks.md).

When a call's row is made final the journal asks :meth:`CallSummaries.entries`
for one outbox row per receiver (the persona's ``webhooks.call_ended``, else
``PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL``) and writes them in the same
transaction as the row (:meth:`phonebridge.storage.index.CallIndex.finish_call`),
then wakes the worker (:meth:`CallSummaries.queued`). The worker
(:meth:`CallSummaries.run_forever`, on every replica: claims are atomic,
webhooks/outbox.py) sends due rows, at least once:

- the summary is built at each attempt from the call row and the transcript
  (on this replica's disk, else from the object store: another replica may
  have recorded the call), so a retry carries a recording link that is fresh,
  not one that expired while the receiver was down; signed like the context
  lookup, with
  the row's id as ``Idempotency-Key`` (the same on every attempt and after a
  restart: the receiver deduplicates on it);
- a 2xx answer delivers it; anything else (a status, a timeout, a refused
  connection, a redirect: never followed) is retried with exponential backoff
  and jitter (:class:`Backoff`: 2 s doubling to at most 10 minutes, so a
  receiver down for an hour gets everything within 10 minutes of coming
  back), and given up after :attr:`Backoff.give_up_after` (state ``failed``,
  shown on the call page).

The call row and its outbox rows commit together: no crash leaves a final
row without its summary queued. A call whose row is never written (the index
down past the journal's retries) has no summary; its facts are in the
transcript and the next start-up marks it crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from phonebridge.errors import StorageError
from phonebridge.personas.book import PersonaBook
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_keys, resolve_inside
from phonebridge.storage.models import CallRecord, DeliveryState, OutboxEntry
from phonebridge.storage.objects import ObjectStore
from phonebridge.webhooks.outbox import Outbox
from phonebridge.webhooks.signing import IDEMPOTENCY_HEADER, recording_query, signed_headers

log = logging.getLogger(__name__)

EVENT_CALL_ENDED = "call.ended"
EVENT_HEADER = "X-Phonebridge-Event"
USER_AGENT = "phonebridge-webhooks/1"
POLL_SECONDS = 2.0
"""How often the worker looks for rows other processes added (its own wake it at once)."""
BATCH = 20
MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class Backoff:
    """When to try again after ``attempts`` failed attempts."""

    first: float = 2.0
    factor: float = 2.0
    longest: float = 600.0
    give_up_after: float = 3 * 86400.0
    """Seconds after the call: three days covers a receiver down over a weekend."""

    def delay(self, attempts: int, jitter: float) -> float:
        """``jitter`` in [0, 1): up to a quarter less, so retries of many calls spread out."""
        base = min(self.longest, self.first * self.factor ** max(0, attempts - 1))
        return base * (1.0 - 0.25 * jitter)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "phonebridge_webhook_deliveries",
            "Call-summary delivery attempts by result (delivered, retry, failed)",
            ["result"],
            registry=registry,
        )


class CallSummaries:
    """The outbox writer and its delivery worker."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        index: CallIndex,
        client: httpx.AsyncClient,
        secret: str,
        public_url: str,
        data_dir: Path,
        personas: Callable[[], PersonaBook],
        default_url: str | None,
        link_seconds: float,
        registry: CollectorRegistry | None = None,
        wall_time: Callable[[], float] = time.time,
        backoff: Backoff = Backoff(),
        jitter: Callable[[], float] = random.random,
        attempt_timeout: float = 10.0,
        store: ObjectStore | None = None,
    ) -> None:
        self._store = store  # where other replicas' transcripts are (None: local only)
        self._outbox = outbox
        self._index = index
        self._client = client
        self._secret = secret
        self._public_url = public_url.rstrip("/")
        self._data_dir = data_dir
        self._personas = personas
        self._default_url = default_url
        self._link_seconds = link_seconds
        self._wall_time = wall_time
        self._backoff = backoff
        self._jitter = jitter
        self._attempt_timeout = attempt_timeout
        self._wake = asyncio.Event()
        self.metrics = DeliveryMetrics(registry or CollectorRegistry())

    # -- writing -----------------------------------------------------------------------

    def url_for(self, persona_id: str) -> str | None:
        persona = self._personas().by_id(persona_id)
        if persona is not None and persona.webhooks.call_ended is not None:
            return persona.webhooks.call_ended
        return self._default_url

    def entries(self, call_sid: str, persona_id: str) -> list[OutboxEntry]:
        """The deliveries to queue with the call's final row (none without a receiver)."""
        url = self.url_for(persona_id)
        if url is None:
            return []
        now = self._wall_time()
        return [
            OutboxEntry(
                id=str(uuid.uuid4()),
                call_sid=call_sid,
                event=EVENT_CALL_ENDED,
                url=url,
                state=DeliveryState.PENDING,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        ]

    def queued(self) -> None:
        """Entries were committed: send them now rather than at the next poll."""
        self._wake.set()

    async def deliveries(self, call_sid: str) -> list[OutboxEntry]:
        return await self._outbox.for_call(call_sid)

    # -- sending -----------------------------------------------------------------------

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            wait = POLL_SECONDS
            try:
                await self.deliver_due()
                due = await self._outbox.next_due()
                if due is not None:
                    wait = min(POLL_SECONDS, max(0.0, due - self._wall_time()))
            except StorageError as exc:
                log.error("webhook outbox unavailable: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def deliver_due(self) -> int:
        """Send every row due now; the number sent (delivered or not)."""
        entries = await self._outbox.claim_due(
            self._wall_time(), limit=BATCH, hold_seconds=self._attempt_timeout * 3
        )
        if entries:
            await asyncio.gather(*(self._attempt(entry) for entry in entries))
        return len(entries)

    async def _attempt(self, entry: OutboxEntry) -> None:
        attempts = entry.attempts + 1
        status: int | None = None
        error: str | None = None
        try:
            body = await self.summary(entry, attempt=attempts)
            status, error = await self._post(entry, body)
        except StorageError as exc:
            error = f"call record unavailable: {exc}"
        now = self._wall_time()
        if error is None:
            self.metrics.attempts.labels("delivered").inc()
            log.info(
                "call summary delivered (attempt %d)", attempts, extra={"call_sid": entry.call_sid}
            )
            state, next_at, delivered = DeliveryState.DELIVERED, now, now
        else:
            give_up = now - entry.created_at >= self._backoff.give_up_after
            state = DeliveryState.FAILED if give_up else DeliveryState.PENDING
            self.metrics.attempts.labels("failed" if give_up else "retry").inc()
            next_at = now + self._backoff.delay(attempts, self._jitter())
            delivered = None
            log.warning(
                "call summary not delivered (attempt %d: %s)%s",
                attempts,
                error,
                "; giving up" if give_up else f"; next in {next_at - now:.1f}s",
                extra={"call_sid": entry.call_sid},
            )
        try:
            await self._outbox.record_attempt(
                entry.id,
                state=state,
                attempts=attempts,
                next_attempt_at=next_at,
                delivered_at=delivered,
                status=status,
                error=error[:MAX_ERROR_CHARS] if error else None,
            )
        except StorageError as exc:
            # The claim runs out and the row is sent again: at least once.
            log.error("delivery not recorded: %s", exc, extra={"call_sid": entry.call_sid})

    async def _post(self, entry: OutboxEntry, body: bytes) -> tuple[int | None, str | None]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: entry.event,
            IDEMPOTENCY_HEADER: entry.id,
            **signed_headers(self._secret, self._wall_time(), body),
        }
        try:
            response = await self._client.post(
                entry.url,
                content=body,
                headers=headers,
                timeout=self._attempt_timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if response.is_success:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    # -- the payload -------------------------------------------------------------------

    async def summary(self, entry: OutboxEntry, *, attempt: int) -> bytes:
        """The JSON body for ``entry`` (docs/webhooks.md, "Call summary")."""
        record = await self._index.get(entry.call_sid)
        if record is None:
            raise StorageError(f"no call row for {entry.call_sid}")
        utterances = await self._utterances(record)
        payload: dict[str, Any] = {
            "event": entry.event,
            "idempotency_key": entry.id,
            "attempt": attempt,
            "call": {
                "call_sid": record.call_sid,
                "from": record.from_number,
                "to": record.to_number,
                "persona": record.persona,
                "provider": record.provider or None,
                "started_at": _iso(record.started_at),
                "model_ready_at": _iso(record.model_ready_at),
                "ended_at": _iso(record.ended_at),
                "end_reason": record.end_reason,
                "ended_by": record.ended_by,
                "error": record.error,
            },
            "durations": {
                "call_seconds": record.duration_seconds,
                "model_socket_seconds": record.model_socket_seconds,
                "time_to_model_ready_seconds": (
                    (record.model_ready_at - record.started_at).total_seconds()
                    if record.model_ready_at is not None
                    else None
                ),
            },
            "transcript": {"utterances": utterances},
            "recording": self._recording(record),
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    def _recording(self, record: CallRecord) -> dict[str, Any] | None:
        if record.recording_path is None:
            return None
        now = self._wall_time()
        query = recording_query(self._secret, record.call_sid, now, self._link_seconds)
        return {
            "url": f"{self._public_url}/recordings/{record.call_sid}.wav?{query}",
            "expires_at": int(now + self._link_seconds),
        }

    async def _utterances(self, record: CallRecord) -> list[dict[str, Any]]:
        if record.transcript_path is None:
            return []
        try:
            raw = await self._transcript(record)
            data = json.loads(raw) if raw is not None else None
        except (OSError, ValueError, StorageError) as exc:
            log.warning("summary without transcript: %s", exc, extra={"call_sid": record.call_sid})
            return []
        found = data.get("utterances") if isinstance(data, dict) else None
        return [item for item in found or [] if isinstance(item, dict)]

    async def _transcript(self, record: CallRecord) -> bytes | None:
        """The transcript's bytes: this replica's file, else the store's copy, else None."""
        assert record.transcript_path is not None
        try:
            path: Path | None = resolve_inside(self._data_dir, record.transcript_path)
        except StorageError:
            if self._store is None:
                raise
            path = None  # another replica's data directory: the store has it
        if path is not None and path.is_file():
            return await asyncio.to_thread(path.read_bytes)
        if self._store is None:
            return None
        key = call_keys(record.call_sid, record.started_at).transcript
        if await self._store.stat(key) is None:
            return None
        return await self._store.read(key)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
