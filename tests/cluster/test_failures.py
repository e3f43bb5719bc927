"""A replica killed mid-call, and a rolling restart under steady call arrival.

Real Caddy, real ``phonebridge serve`` replicas sharing a real Redis and
PostgreSQL and one self-hosted pool (tests/cluster/helpers.py); the Twilio
phone simulator, the PersonaPlex simulators and moto's S3 are TEST DOUBLES.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from phonebridge.simulators.phone.report import DialReport
from phonebridge.storage.models import CallQuery, CallStatus

from ..conftest import HEAVY, tone_mulaw
from .conftest import LEASE_TTL_SECONDS, ClusterFactory
from .helpers import SHAKSHUKA_FALLBACK, Cluster, Replica, replica_of, until

pytestmark = HEAVY  # a whole cluster: one at a time (tests/conftest.py)

# Short calls and deadlines keep each test well under a minute.
DRAIN_SECONDS = 8.0
WITHDRAW_SECONDS = 1.0  # > Caddy's health interval (helpers.HEALTH_INTERVAL)
# The longest a drained replica may take to exit by serve.py's own bounds
# (withdraw, drain, then uvicorn's graceful shutdown of int(withdraw + drain) + 10 s),
# plus slack for a loaded CI machine: a liveness deadline, not a timing claim.
EXIT_SECONDS = WITHDRAW_SECONDS + DRAIN_SECONDS + int(WITHDRAW_SECONDS + DRAIN_SECONDS) + 10 + 10


async def calls_running(replica: Replica, calls: int) -> None:
    """Wait until ``calls`` of the replica's calls have claimed their stream."""

    async def running() -> bool:
        return await replica.active_calls() >= calls

    await until(running, 15)


async def lease_holders(cluster: Cluster) -> dict[str, str]:
    """Server URL -> replica id, from the lease keys in Redis (``<replica>:<random>``)."""
    redis = Redis.from_url(cluster.replicas[0].env["PHONEBRIDGE_REDIS_URL"])
    try:
        holders = {}
        for sim in cluster.simulators:
            token = await redis.get(f"phonebridge:lease:{sim.url}")
            if token is not None:
                holders[sim.url] = token.decode().split(":")[0]
        return holders
    finally:
        await redis.aclose()


async def lease_pttl_ms(cluster: Cluster, url: str) -> int:
    redis = Redis.from_url(cluster.replicas[0].env["PHONEBRIDGE_REDIS_URL"])
    try:
        return int(await redis.pttl(f"phonebridge:lease:{url}"))
    finally:
        await redis.aclose()


async def test_kill_9_mid_call_its_callers_hear_the_fallback_from_a_survivor(
    start_cluster: ClusterFactory,
) -> None:
    # The pool is exactly as big as the calls: after the kill, a new call can
    # only get a server if the dead replica's leases came free.
    async with start_cluster(pool_size=6) as cluster:
        calls = [
            asyncio.create_task(cluster.dial(from_=f"+1416556{n:04d}", audio=tone_mulaw(6.0)))
            for n in range(6)
        ]
        victim = cluster.replica("pb-1")
        await asyncio.gather(*(calls_running(replica, 2) for replica in cluster.replicas))

        async def rows_live() -> bool:
            # Each replica inserts a call's row just after its stream starts
            # (in the background); a kill before that leaves no row to mark.
            page = await cluster.index.list_calls(CallQuery(status=CallStatus.LIVE))
            return page.total == 6

        await until(rows_live, 10)
        held = await lease_holders(cluster)
        victims_servers = {url for url, holder in held.items() if holder == "pb-1"}
        assert len(victims_servers) == 2
        assert len(held) == 6  # the whole pool is in use
        await victim.kill()
        # Nobody released them (the process is gone): they expire on their own,
        # and no key outlives one TTL from now.
        for url in victims_servers:
            assert 0 < await lease_pttl_ms(cluster, url) <= LEASE_TTL_SECONDS * 1000

        async def expired() -> bool:
            return not victims_servers & set(await lease_holders(cluster))

        await until(expired, LEASE_TTL_SECONDS + 3)
        # The pool serves new calls on exactly those servers while the
        # survivors' calls still hold the rest.
        survivors = [cluster.replica("pb-0"), cluster.replica("pb-2")]
        await asyncio.gather(*(r.wait_for_free_servers(2) for r in survivors))
        before = {sim.url: len(sim.connections) for sim in cluster.simulators}
        fresh = await asyncio.gather(
            *(cluster.dial(from_=f"+1416558{n:04d}", audio=tone_mulaw(0.4)) for n in range(2))
        )
        for report in fresh:
            assert report.ok, report.protocol_errors
            assert report.frames_received > 0
        used = {sim.url for sim in cluster.simulators if len(sim.connections) > before[sim.url]}
        assert used == victims_servers
        reports = await asyncio.gather(*calls)

        cut = [report for report in reports if replica_of(report) == "pb-1"]
        kept = [report for report in reports if replica_of(report) != "pb-1"]
        assert len(cut) == 2
        assert len(kept) == 4
        for report in cut:
            # The stream dropped with the process; Twilio (the simulator) asked
            # the <Connect action> under /twilio/r/pb-1/, which Caddy could not
            # deliver there and gave to a survivor: the persona's fallback.
            assert report.ended_by == "bridge"
            assert report.action_url is not None
            assert "/twilio/r/pb-1/stream-ended" in report.action_url
            assert report.action_status == 200
            assert any(SHAKSHUKA_FALLBACK in said for said in report.said)
            # Its row ends crashed, marked by a survivor (two checks missed
            # pb-1's heartbeat): pb-1 never starts again in this test.
            record = await cluster.ended_record(report.call_sid, within=15)
            assert record.end_reason == "crashed"
            assert record.replica == "pb-1"
            assert "replica pb-1 stopped" in (record.error or "")
        for report in [*kept, *fresh]:
            assert report.ok, report.protocol_errors
            assert report.ended_by == "caller"
            assert report.frames_received > 0
            record = await cluster.ended_record(report.call_sid)
            assert record.end_reason == "caller_hangup"
        # Nothing leaks on the survivors: no live call, no lease, no open model
        # socket, no lease key left in Redis; and no server ever had two sessions.
        for survivor in survivors:
            await survivor.settle()

        async def all_closed() -> bool:
            sockets = [c for sim in cluster.simulators for c in sim.connections]
            return all(c.closed_at is not None for c in sockets)

        await until(all_closed, 5)
        assert await lease_holders(cluster) == {}
        assert cluster.second_connections() == []


class Arrivals:
    """Calls of about 1.5 s each: one every 0.3 s, plus bursts on demand."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._calls: list[asyncio.Task[DialReport]] = []
        self._stop = asyncio.Event()
        self._steady = asyncio.create_task(self._run())

    def call(self) -> None:
        n = len(self._calls)
        dial = self._cluster.dial(from_=f"+1416557{n:04d}", audio=tone_mulaw(1.2), tail=0.3)
        self._calls.append(asyncio.create_task(dial))

    async def _run(self) -> None:
        while not self._stop.is_set():
            self.call()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.3)

    async def finish(self) -> list[DialReport]:
        self._stop.set()
        await self._steady
        return list(await asyncio.gather(*self._calls))


async def test_rolling_restart_refuses_no_call_and_cuts_none(
    start_cluster: ClusterFactory,
) -> None:

    serve_args = (
        *("--drain-seconds", str(DRAIN_SECONDS)),
        *("--withdraw-seconds", str(WITHDRAW_SECONDS)),
    )
    async with start_cluster(pool_size=12, serve_args=serve_args) as cluster:
        arrivals = Arrivals(cluster)
        exit_codes = []
        for replica in cluster.replicas:
            await asyncio.sleep(0.6)  # calls in progress on the replica about to drain
            replica.terminate()  # SIGTERM: withdraw from the proxy, then drain
            # Webhooks in the very moment of the SIGTERM, before the proxy can
            # have noticed: round robin gives the replica one of them.
            for _ in cluster.replicas:
                arrivals.call()
            exit_codes.append(await replica.wait(EXIT_SECONDS))
            await replica.start()
        await asyncio.sleep(0.6)
        reports = await arrivals.finish()

        assert exit_codes == [0, 0, 0]  # every drain finished by itself, in time
        assert [replica.starts for replica in cluster.replicas] == [2, 2, 2]
        assert len(reports) >= 15
        for report in reports:
            assert report.webhook_status == 200
            # Not refused: every webhook got a stream, none the busy message.
            if report.stream_url is None:
                record = await cluster.record(report.call_sid)
                assert record is not None
                raise AssertionError(f"refused: {record.end_reason} ({record.error})")
            assert report.ok, report.protocol_errors
            # Not cut: every caller hung up by themselves.
            assert report.ended_by == "caller"
            record = await cluster.record(report.call_sid)
            assert record is not None
            assert record.end_reason == "caller_hangup", (
                replica_of(report),
                record.error,
                record.started_at,
                record.ended_at,
                report.ended_at_s,
                report.close_code,
                report.stream_duration_s,
                report.frames_sent,
            )
        # Calls kept arriving on the restarted replicas too.
        assert {replica_of(report) for report in reports[-6:]} >= {"pb-0"}
