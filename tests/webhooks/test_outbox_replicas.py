"""The outbox with several replicas: one transaction with the call's row, atomic claims,
and a replica serving another's transcript and recording from the object store.

Real databases (SQLite, and a real PostgreSQL from tests/realservers), the
webhook receiver TEST DOUBLE on loopback, and the local-directory object store
standing in for the shared one (the same interface S3 is behind).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from phonebridge.errors import StorageError
from phonebridge.personas.loader import load_personas
from phonebridge.simulators.webhook_receiver import WebhookReceiver
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_keys
from phonebridge.storage.models import CallEnd, CallStart, CallStatus, DeliveryState, OutboxEntry
from phonebridge.storage.objects import LocalObjectStore
from phonebridge.web.recording_links import recording_link_router
from phonebridge.webhooks.delivery import Backoff, CallSummaries
from phonebridge.webhooks.outbox import Outbox
from phonebridge.webhooks.signing import recording_query

from ..conftest import REPO

SECRET = "replica-secret"
T0 = datetime(2024, 4, 12, 14, 0, tzinfo=UTC)
FAST = Backoff(first=0.01, factor=2.0, longest=0.05)


def sid(n: int) -> str:
    return f"CA{n:032x}"


def pending_entry(call_sid: str, url: str) -> OutboxEntry:
    now = time.time()  # the senders' wall clock: due now, far inside the retry window
    return OutboxEntry(
        id=str(uuid.uuid4()),
        call_sid=call_sid,
        event="call.ended",
        url=url,
        state=DeliveryState.PENDING,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )


async def start(index: CallIndex, call_sid: str, **paths: str) -> None:
    await index.start_call(
        CallStart(
            call_sid=call_sid,
            started_at=T0,
            persona="citysan",
            status=CallStatus.LIVE,
            **paths,
        )
    )


END = CallEnd(ended_at=T0 + timedelta(seconds=30), end_reason="caller_hangup", ended_by="caller")


def summaries(
    index: CallIndex, client: httpx.AsyncClient, data_dir: Path, **more: object
) -> CallSummaries:
    return CallSummaries(
        outbox=Outbox.of(index),
        index=index,
        client=client,
        secret=SECRET,
        public_url="https://bridge.example",
        data_dir=data_dir,
        personas=lambda: load_personas(REPO / "personas"),
        default_url=None,
        link_seconds=600,
        backoff=FAST,
        **more,  # type: ignore[arg-type]
    )


async def test_the_summary_is_queued_in_the_final_rows_transaction(database_url: str) -> None:
    async with await CallIndex.create(database_url) as index:
        outbox = Outbox.of(index)
        await start(index, sid(1))
        entry = pending_entry(sid(1), "http://127.0.0.1:9/h")
        await index.finish_call(sid(1), END, outbox=[entry])
        assert await outbox.for_call(sid(1)) == [entry]
        row = await index.get(sid(1))
        assert row is not None
        assert row.status is CallStatus.ENDED
        # A final write that fails (no such row) queues nothing: the two go together.
        orphan = pending_entry(sid(2), "http://127.0.0.1:9/h")
        with pytest.raises(StorageError, match="no call"):
            await index.finish_call(sid(2), END, outbox=[orphan])
        assert await outbox.for_call(sid(2)) == []
        # A delivery already queued is not queued twice by a retried write.
        with pytest.raises(StorageError, match="conflicting row"):
            await index.finish_call(sid(1), END, outbox=[entry])
        assert await outbox.for_call(sid(1)) == [entry]


async def test_two_replicas_racing_send_each_delivery_once_per_attempt(
    database_url: str, tmp_path: Path
) -> None:
    calls = 30
    failures = 12  # the receiver is down for the first requests: some rows need attempt 2, 3
    async with WebhookReceiver(secret=SECRET, fail_first=failures) as receiver:
        url = receiver.url + "/hook"
        # Two replicas: each its own engine and connection pool on the one database.
        first = await CallIndex.create(database_url, replica="r1")
        second = await CallIndex.create(database_url, replica="r2")
        client = httpx.AsyncClient()
        try:
            entries = []
            for n in range(calls):
                await start(first, sid(n))
                entry = pending_entry(sid(n), url)
                entries.append(entry)
                await first.finish_call(sid(n), END, outbox=[entry])
            senders = [summaries(idx, client, tmp_path) for idx in (first, second)]
            outbox = Outbox.of(first)
            async with asyncio.timeout(30):
                while True:
                    sent = await asyncio.gather(*(s.deliver_due() for s in senders))
                    rows = [e for n in range(calls) for e in await outbox.for_call(sid(n))]
                    if all(e.state is DeliveryState.DELIVERED for e in rows):
                        break
                    if sum(sent) == 0:
                        await asyncio.sleep(0.01)  # waiting out a backoff
        finally:
            await client.aclose()
            await first.close()
            await second.close()
    attempts: dict[str, list[int]] = defaultdict(list)
    for request in receiver.received:
        body = request.json()
        assert request.headers["idempotency-key"] == body["idempotency_key"]
        attempts[body["idempotency_key"]].append(body["attempt"])
    assert set(attempts) == {entry.id for entry in entries}
    # Never the same attempt of one delivery twice: 1, 2, ... each exactly once.
    for numbers in attempts.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert len(receiver.received) == calls + failures
    by_id = {row.id: row for row in rows}
    assert all(by_id[key].attempts == len(numbers) for key, numbers in attempts.items())


async def test_another_replicas_call_is_summarised_and_linked_from_the_object_store(
    tmp_path: Path,
) -> None:
    """The replica that recorded the call is gone; this one has only the store."""
    store = LocalObjectStore(tmp_path / "store")
    keys = call_keys(sid(1), T0)
    elsewhere = tmp_path / "replica-a"  # the recording replica's data dir: not ours
    for key, content in (
        (
            keys.transcript,
            json.dumps(
                {
                    "version": 1,
                    "call_sid": sid(1),
                    "events": [],
                    "utterances": [
                        {"speaker": "agent", "start": 0.1, "end": 0.9, "text": "Hello from A"}
                    ],
                }
            ),
        ),
        (keys.recording, "RIFF" + "x" * 96),
    ):
        source = elsewhere / key
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(content)
        await store.put_file(key, source, "application/octet-stream")
    ours = tmp_path / "replica-b"
    ours.mkdir()
    index_url = f"sqlite+aiosqlite:///{ours / 'calls.db'}"
    async with (
        WebhookReceiver(secret=SECRET) as receiver,
        await CallIndex.create(index_url) as index,
    ):
        await start(
            index,
            sid(1),
            recording_path=str(elsewhere / keys.recording),
            transcript_path=str(elsewhere / keys.transcript),
        )
        await index.finish_call(sid(1), END, outbox=[pending_entry(sid(1), receiver.url)])
        async with httpx.AsyncClient() as client:
            sender = summaries(index, client, ours, store=store)
            assert await sender.deliver_due() == 1
        app = FastAPI()
        now = T0.timestamp()
        app.include_router(
            recording_link_router(index, ours, SECRET, wall_time=lambda: now, store=store)
        )
        link = f"/recordings/{sid(1)}.wav?{recording_query(SECRET, sid(1), now, 60)}"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
            whole = await http.get(link)
            ranged = await http.get(link, headers={"Range": "bytes=0-3"})
            missing_store = await http.get(link.replace(sid(1), sid(2)))
    [summary] = receiver.received
    assert summary.json()["transcript"]["utterances"][0]["text"] == "Hello from A"
    assert (whole.status_code, whole.content) == (200, b"RIFF" + b"x" * 96)
    assert whole.headers["cache-control"] == "private, no-store"
    assert (ranged.status_code, ranged.content) == (206, b"RIFF")
    assert missing_store.status_code == 403  # the link was signed for another call
