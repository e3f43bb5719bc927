"""Two replicas racing over one campaign on a shared database: nobody is dialled twice.

Each "replica" is its own :class:`CallIndex` (its own engine and connection
pool, as two processes would have) with its own :class:`OutboundStore`, and
runs the scheduler's claim loop with several workers at once, all reading the
same due contacts and claiming them concurrently. A claimed contact is
"dialled" (counted) and its attempt ended a moment later, freeing a slot.
Runs on a real PostgreSQL (row locks, READ COMMITTED) and on SQLite (one
file, the database write lock).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from phonebridge.outbound.store import Attempt, NewContact, OutboundStore
from phonebridge.storage.index import CallIndex, default_database_url

from ..realservers.postgres_server import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]

NOW = datetime(2025, 1, 15, 15, 0, tzinfo=UTC)
CONTACTS = [f"+1416555{n:04d}" for n in range(700, 740)]  # 40
WORKERS_PER_REPLICA = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return default_database_url(tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    return url


class Ledger:
    """What the fake carrier saw: who was dialled, and how many calls were up at once."""

    def __init__(self) -> None:
        self.dialled: Counter[str] = Counter()
        self.by_replica: Counter[str] = Counter()
        self.up = 0
        self.max_up = 0


async def replica(
    name: str, store: OutboundStore, campaign_id: str, ledger: Ledger, start: asyncio.Event
) -> None:
    campaign = await store.campaign(campaign_id)
    assert campaign is not None

    async def worker() -> None:
        await start.wait()
        while True:
            due = await store.due_contacts(campaign_id, NOW, limit=len(CONTACTS))
            if not due:
                return
            for contact in due:
                claimed = await store.claim_contact(
                    contact, campaign, now=NOW, replica=name, carrier="twilio"
                )
                if isinstance(claimed, Attempt):
                    await dial_and_hang_up(claimed)
                elif claimed == "full":
                    await asyncio.sleep(0.05)  # wait for a slot, as the runner's next tick does

    async def dial_and_hang_up(attempt: Attempt) -> None:
        ledger.dialled[attempt.to_number] += 1
        ledger.by_replica[name] += 1
        ledger.up += 1
        ledger.max_up = max(ledger.max_up, ledger.up)
        await asyncio.sleep(0.2)  # the call: long enough for every worker to try a claim
        ledger.up -= 1
        assert await store.finish_attempt(attempt.id, "answered", NOW + timedelta(seconds=1))

    async with asyncio.timeout(120):
        await asyncio.gather(*(worker() for _ in range(WORKERS_PER_REPLICA)))


@pytest.mark.parametrize("concurrency", [3, 100])
async def test_two_replicas_never_dial_one_contact_twice(
    database_url: str, concurrency: int
) -> None:
    first = await CallIndex.create(database_url, replica="r0")
    second = await CallIndex.create(database_url, replica="r1")
    try:
        stores = [OutboundStore(first.engine), OutboundStore(second.engine)]
        campaign = await stores[0].create_campaign(
            name="race",
            persona="citysan",
            from_number="+14165550100",
            created_by="operator:test",
            concurrency=concurrency,
            daily_cap=None,
            max_attempts=1,
            retry_seconds=0,
            window_start="00:00",
            window_end="23:59",
            contacts_in=[NewContact(n, {}) for n in CONTACTS],
            now=NOW,
        )
        ledger = Ledger()
        start = asyncio.Event()
        racing = [
            asyncio.create_task(replica(f"r{i}", store, campaign.id, ledger, start))
            for i, store in enumerate(stores)
        ]
        await asyncio.sleep(0)
        start.set()  # every worker of both replicas starts on the same due list
        await asyncio.gather(*racing)

        assert ledger.dialled == Counter(CONTACTS)  # everyone, exactly once
        assert ledger.max_up <= concurrency  # the campaign's limit held across replicas
        attempts = await stores[1].attempts_for(campaign_id=campaign.id)
        assert Counter(a.to_number for a in attempts) == Counter(CONTACTS)
        assert {a.replica for a in attempts} <= {"r0", "r1"}
        contacts = await stores[1].contacts_of(campaign.id)
        assert {(c.state, c.attempts) for c in contacts} == {("done", 1)}
        assert await stores[0].finish_if_done(campaign.id, NOW + timedelta(seconds=2))
    finally:
        await first.close()
        await second.close()


async def test_a_paused_campaign_claims_nothing_on_any_replica(database_url: str) -> None:
    async with await CallIndex.create(database_url) as index:
        store = OutboundStore(index.engine)
        campaign = await store.create_campaign(
            name="paused",
            persona="citysan",
            from_number="+14165550100",
            created_by="operator:test",
            concurrency=5,
            daily_cap=2,
            max_attempts=1,
            retry_seconds=0,
            window_start="00:00",
            window_end="23:59",
            contacts_in=[NewContact(n, {}) for n in CONTACTS[:4]],
            now=NOW,
        )
        first, second, third, fourth = await store.due_contacts(campaign.id, NOW, limit=10)
        day = NOW.replace(hour=0, minute=0)
        assert isinstance(
            await store.claim_contact(first, campaign, now=NOW, replica="r0", carrier="twilio"),
            Attempt,
        )
        # the same contact as another replica saw it before the claim: taken
        assert (
            await store.claim_contact(first, campaign, now=NOW, replica="r1", carrier="twilio")
            == "taken"
        )
        assert isinstance(
            await store.claim_contact(
                second, campaign, now=NOW, replica="r1", carrier="twilio", day_start=day
            ),
            Attempt,
        )
        # the daily cap (2) is counted inside the claim
        assert (
            await store.claim_contact(
                third, campaign, now=NOW, replica="r0", carrier="twilio", day_start=day
            )
            == "full"
        )
        assert await store.set_campaign_state(campaign.id, "paused", NOW, only_from=("running",))
        assert (
            await store.claim_contact(fourth, campaign, now=NOW, replica="r0", carrier="twilio")
            == "stopped"
        )
        assert [c.state for c in await store.contacts_of(campaign.id)] == [
            "dialing",
            "dialing",
            "queued",
            "queued",
        ]
