"""The cluster's shared stores stopped and restarted mid-traffic: Redis, then PostgreSQL.

Real ``phonebridge serve`` replicas behind a real Caddy, sharing a real
redis-server and a real PostgreSQL (tests/cluster/conftest.py); the Twilio
phone simulator, the PersonaPlex simulators (one self-hosted pool, and
PolarGrid for overflow) and moto's S3 are TEST DOUBLES.

The defined outcomes (docs/deployment.md, RELIABILITY.md):

- **Redis down**: calls in progress carry on; a new call never gets a
  self-hosted server without a shared lease (the prompt-swap hazard): it
  overflows to the hosted provider or hears busy; ``/readyz`` and
  ``phonebridge_coordination_up`` say so; recovery is automatic.
- **PostgreSQL down**: calls in progress carry on and new calls are taken
  (leases are in Redis, files on disk); each row the index refuses is spooled
  on its replica's disk and written when the database is back, so no call
  record is lost; ``/readyz`` and ``phonebridge_call_index_up`` /
  ``phonebridge_call_rows_waiting`` say so.
"""

from __future__ import annotations

import asyncio

from phonebridge.simulators.phone.report import DialReport
from phonebridge.storage.models import CallQuery, CallStatus

from ..conftest import HEAVY, tone_mulaw
from .conftest import ClusterFactory, SharedParts
from .helpers import CITYSAN, SHAKSHUKA, Cluster, metric, replica_of, until

pytestmark = HEAVY  # a whole cluster: one at a time (tests/conftest.py)


async def calls_in_progress(
    cluster: Cluster, count: int, seconds: float
) -> list[asyncio.Task[DialReport]]:
    """``count`` calls through the proxy, returned once every one is live on its replica."""
    calls = [
        asyncio.create_task(cluster.dial(from_=f"+1416560{n:04d}", audio=tone_mulaw(seconds)))
        for n in range(count)
    ]

    async def live() -> bool:
        page = await cluster.index.list_calls(CallQuery(status=CallStatus.LIVE))
        return page.total >= count

    await until(live, 15)
    return calls


async def test_redis_stopped_and_restarted_mid_traffic(
    start_cluster: ClusterFactory, shared_parts: SharedParts
) -> None:
    async with start_cluster(pool_size=3) as cluster:
        live = await calls_in_progress(cluster, 3, seconds=5.0)
        shared_parts.redis.stop()

        async def all_noticed() -> bool:
            texts = [(await r.get("/readyz")).text for r in cluster.replicas]
            return all("redis DOWN" in text for text in texts)

        await until(all_noticed, 10)
        for replica in cluster.replicas:
            ready = await replica.get("/readyz")
            assert ready.status_code == 200  # hosted providers still take calls
            assert "self-hosted pool closed" in ready.text
            assert metric(await replica.metrics(), "phonebridge_coordination_up") == 0

        # New calls on every replica never touch the self-hosted pool (a free
        # server sits there, but no lease can be shared): overflow or busy.
        sessions = cluster.sessions()
        new = await asyncio.gather(
            *(
                cluster.dial(to=to, from_=f"+1416561{n:04d}", audio=tone_mulaw(0.3), via=r.url)
                for n, (to, r) in enumerate(
                    (to, r) for to in (CITYSAN, SHAKSHUKA) for r in cluster.replicas
                )
            )
        )
        assert cluster.sessions() == sessions
        for report in new[:3]:  # CitySan: PolarGrid answered
            assert report.frames_received > 0
            record = await cluster.ended_record(report.call_sid)
            assert (record.provider, record.end_reason) == ("polargrid", "caller_hangup")
        for report in new[3:]:  # Shakshuka has no overflow: busy
            assert report.twiml_verbs == ["Say", "Hangup"]
            assert (await cluster.ended_record(report.call_sid)).end_reason == "busy"

        # The calls in progress carried on to their callers' own hang-up.
        for report in await asyncio.gather(*live):
            assert report.ok, report.protocol_errors
            assert report.ended_by == "caller"
            record = await cluster.ended_record(report.call_sid)
            assert (record.provider, record.end_reason) == ("personaplex", "caller_hangup")

        shared_parts.redis.start()  # empty, same port: nobody has to do anything
        await asyncio.gather(*(r.wait_for_free_servers(3) for r in cluster.replicas))
        for replica in cluster.replicas:
            assert "redis up" in (await replica.get("/readyz")).text
            assert metric(await replica.metrics(), "phonebridge_coordination_up") == 1
        back = await cluster.dial(from_="+14165619999", audio=tone_mulaw(0.3))
        assert back.frames_received > 0
        record = await cluster.ended_record(back.call_sid)
        assert record.provider == "personaplex"
        assert cluster.second_connections() == []


async def test_postgresql_stopped_and_restarted_mid_traffic(
    start_cluster: ClusterFactory, shared_parts: SharedParts
) -> None:

    postgres = shared_parts.postgres
    async with start_cluster(pool_size=5) as cluster:
        live = await calls_in_progress(cluster, 3, seconds=3.0)
        await asyncio.to_thread(postgres.shutdown)
        try:
            # New calls are still taken, on self-hosted servers leased through Redis.
            during = await asyncio.gather(
                *(cluster.dial(from_=f"+1416562{n:04d}", audio=tone_mulaw(0.5)) for n in range(2))
            )
            for report in during:
                assert report.ok, report.protocol_errors
                assert report.frames_received > 0
            # The calls in progress carried on to their callers' own hang-up.
            earlier = await asyncio.gather(*live)
            for report in earlier:
                assert report.ok, report.protocol_errors
                assert report.ended_by == "caller"
            reports = [*earlier, *during]

            # Every replica shows the outage; the ones that ran calls hold their rows.
            async def all_noticed() -> bool:
                texts = [(await r.get("/readyz")).text for r in cluster.replicas]
                return all("call index: DOWN" in text for text in texts)

            await until(all_noticed, 10)
            waiting = 0.0
            for replica in cluster.replicas:
                ready = await replica.get("/readyz")
                assert ready.status_code == 200  # still taking calls
                text = await replica.metrics()
                assert metric(text, "phonebridge_call_index_up") == 0
                waiting += metric(text, "phonebridge_call_rows_waiting")
            assert waiting == len(reports)  # every call's final row, none lost
        finally:
            await asyncio.to_thread(postgres.start)

        # Back: the spooled rows are written by themselves, each by its replica.
        for report in reports:
            record = await cluster.ended_record(report.call_sid, within=20)
            assert record.end_reason == "caller_hangup"
            assert record.replica == replica_of(report)
            assert record.provider == "personaplex"

        async def drained() -> bool:
            texts = [await r.metrics() for r in cluster.replicas]
            return all(
                metric(t, "phonebridge_call_rows_waiting") == 0
                and metric(t, "phonebridge_call_index_up") == 1
                for t in texts
            )

        await until(drained, 10)
        listed = await cluster.api("/api/calls?limit=100")
        assert listed.status_code == 200
        assert {item["call_sid"] for item in listed.json()["items"]} == {
            report.call_sid for report in reports
        }
        assert cluster.second_connections() == []
