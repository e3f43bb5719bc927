"""Post-call delivery against a real receiver on loopback and a real SQLite call index.

The backoff is shortened so retries take milliseconds; what is asserted is
what the receiver got (how many times, with which key) and what the outbox
says, never how long it took.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from phonebridge.personas.loader import load_personas
from phonebridge.simulators.webhook_receiver import WebhookReceiver
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import CallEnd, CallStart, CallStatus, DeliveryState
from phonebridge.webhooks.delivery import Backoff, CallSummaries
from phonebridge.webhooks.outbox import Outbox

from ..conftest import REPO

SECRET = "summary-secret"
CALL = "CA" + "5" * 32
FAST = Backoff(first=0.01, factor=2.0, longest=0.05)


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[CallIndex]:
    data = tmp_path / "data"
    (data / "calls").mkdir(parents=True)
    transcript = data / "calls" / "t.json"
    transcript.write_text(
        json.dumps(
            {
                "version": 1,
                "call_sid": CALL,
                "utterances": [{"speaker": "agent", "start": 0.5, "end": 1.2, "text": "Hello"}],
                "events": [],
            }
        )
    )
    (data / "calls" / "r.wav").write_bytes(b"RIFF")
    started = datetime(2024, 4, 12, 14, 0, tzinfo=UTC)
    index = await CallIndex.create(f"sqlite+aiosqlite:///{data / 'phonebridge.db'}")
    await index.start_call(
        CallStart(
            call_sid=CALL,
            started_at=started,
            from_number="+14165550111",
            to_number="+14165550101",
            persona="citysan",
            provider="personaplex",
            status=CallStatus.LIVE,
            recording_path="calls/r.wav",
            transcript_path="calls/t.json",
        )
    )
    await index.finish_call(
        CALL,
        CallEnd(
            ended_at=started + timedelta(seconds=42),
            end_reason="caller_hangup",
            ended_by="caller",
            model_socket_seconds=44.5,
        ),
    )
    yield index
    await index.close()


async def summaries_for(
    index: CallIndex, tmp_path: Path, url: str | None, backoff: Backoff = FAST
) -> tuple[CallSummaries, Outbox, httpx.AsyncClient]:
    outbox = Outbox.of(index)
    client = httpx.AsyncClient()
    summaries = CallSummaries(
        outbox=outbox,
        index=index,
        client=client,
        secret=SECRET,
        public_url="https://bridge.example",
        data_dir=tmp_path / "data",
        personas=lambda: load_personas(REPO / "personas"),
        default_url=url,
        link_seconds=600,
        backoff=backoff,
    )
    return summaries, outbox, client


async def queue(summaries: CallSummaries, outbox: Outbox) -> None:
    """Queue the call's summary as a call's final row write does (here on its own)."""
    for entry in summaries.entries(CALL, "citysan"):
        await outbox.add(entry)
    summaries.queued()


async def test_a_receiver_that_fails_three_times_then_succeeds_gets_it_once_more(
    index: CallIndex, tmp_path: Path
) -> None:
    async with WebhookReceiver(secret=SECRET, fail_first=3) as receiver:
        summaries, outbox, client = await summaries_for(index, tmp_path, receiver.url + "/hook")
        worker = asyncio.create_task(summaries.run_forever())
        try:
            await queue(summaries, outbox)
            async with asyncio.timeout(10):
                got = await receiver.wait_for(4)
                while True:
                    entries = await outbox.for_call(CALL)
                    if entries[0].state is DeliveryState.DELIVERED:
                        break
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # nothing more arrives once it is delivered
        finally:
            worker.cancel()
            await client.aclose()
    assert len(receiver.received) == 4
    keys = {request.headers["idempotency-key"] for request in got}
    [entry] = await outbox.for_call(CALL)
    assert keys == {entry.id}
    assert [request.json()["attempt"] for request in got] == [1, 2, 3, 4]
    assert all(request.signature_ok for request in got)
    assert (entry.attempts, entry.last_status, entry.last_error) == (4, 200, None)
    summary = got[-1].json()
    assert summary["event"] == "call.ended"
    assert summary["idempotency_key"] == entry.id
    assert summary["call"]["end_reason"] == "caller_hangup"
    assert summary["call"]["from"] == "+14165550111"
    assert summary["durations"] == {
        "call_seconds": 42.0,
        "model_socket_seconds": 44.5,
        "time_to_model_ready_seconds": None,
    }
    assert summary["transcript"]["utterances"][0]["text"] == "Hello"
    assert summary["recording"]["url"].startswith(f"https://bridge.example/recordings/{CALL}.wav?")


async def test_past_the_retry_window_a_delivery_is_given_up_and_kept(
    index: CallIndex, tmp_path: Path
) -> None:
    async with WebhookReceiver(mode="status_500", secret=SECRET) as receiver:
        summaries, outbox, client = await summaries_for(
            index, tmp_path, receiver.url, Backoff(first=0.01, give_up_after=0.0)
        )
        try:
            await queue(summaries, outbox)
            assert await summaries.deliver_due() == 1
            assert await summaries.deliver_due() == 0  # failed rows are not sent again
        finally:
            await client.aclose()
    [entry] = await outbox.for_call(CALL)
    assert (entry.state, entry.attempts, entry.last_error) == (DeliveryState.FAILED, 1, "HTTP 500")


async def test_a_redirect_or_a_refused_connection_is_a_failed_attempt(
    index: CallIndex, tmp_path: Path
) -> None:
    async with WebhookReceiver(mode="redirect", secret=SECRET) as receiver:
        summaries, outbox, client = await summaries_for(index, tmp_path, receiver.url)
        try:
            await queue(summaries, outbox)
            await summaries.deliver_due()
        finally:
            await client.aclose()
    assert len(receiver.received) == 1  # the Location was not followed
    [entry] = await outbox.for_call(CALL)
    assert (entry.state, entry.last_status) == (DeliveryState.PENDING, 302)


async def test_without_a_receiver_nothing_is_queued(index: CallIndex, tmp_path: Path) -> None:
    summaries, outbox, client = await summaries_for(index, tmp_path, None)
    await client.aclose()
    assert summaries.entries(CALL, "citysan") == []
    await queue(summaries, outbox)
    assert await outbox.for_call(CALL) == []
