"""A replica killed mid-call, and a rolling restart under steady call arrival.

Real Caddy and real ``phonebridge serve`` replicas (tests/cluster/helpers.py);
the Twilio phone simulator and the PersonaPlex simulators are TEST DOUBLES.
"""

from __future__ import annotations

import asyncio
import contextlib

from phonebridge.simulators.phone.report import DialReport

from ..conftest import tone_mulaw
from .conftest import ClusterFactory
from .helpers import SHAKSHUKA_FALLBACK, Cluster, Replica, replica_of

# Short calls and deadlines keep each test well under a minute.
DRAIN_SECONDS = 8.0
WITHDRAW_SECONDS = 1.0  # > Caddy's health interval (helpers.HEALTH_INTERVAL)


async def streams_flowing(replica: Replica, calls: int) -> None:
    """Wait until ``calls`` of the replica's model sessions are taking the caller's audio."""
    async with asyncio.timeout(15):
        while True:
            flowing = sum(
                1
                for sim in replica.simulators
                for connection in sim.connections
                if connection.input_messages > 0 and connection.closed_at is None
            )
            if flowing >= calls:
                return
            await asyncio.sleep(0.02)


async def test_kill_9_mid_call_its_callers_hear_the_fallback_from_a_survivor(
    start_cluster: ClusterFactory,
) -> None:
    async with start_cluster() as cluster:
        calls = [
            asyncio.create_task(cluster.dial(from_=f"+1416556{n:04d}", audio=tone_mulaw(3.0)))
            for n in range(6)
        ]
        victim = cluster.replica("pb-1")
        await asyncio.gather(*(streams_flowing(replica, 2) for replica in cluster.replicas))
        await victim.kill()
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
        for report in kept:
            assert report.ok, report.protocol_errors
            assert report.ended_by == "caller"
            assert report.frames_received > 0
        # Nothing leaks on the survivors: no live call, no lease, no open model socket.
        for survivor in (cluster.replica("pb-0"), cluster.replica("pb-2")):
            await survivor.settle()
            for sim in survivor.simulators:
                assert all(connection.closed_at is not None for connection in sim.connections)
            for report in kept:
                record = await cluster.record(report.call_sid)
                assert record is not None
                assert record.end_reason == "caller_hangup"


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
    async with start_cluster(servers_per_replica=8, serve_args=serve_args) as cluster:
        arrivals = Arrivals(cluster)
        exit_codes = []
        for replica in cluster.replicas:
            await asyncio.sleep(0.6)  # calls in progress on the replica about to drain
            replica.terminate()  # SIGTERM: withdraw from the proxy, then drain
            # Webhooks in the very moment of the SIGTERM, before the proxy can
            # have noticed: round robin gives the replica one of them.
            for _ in cluster.replicas:
                arrivals.call()
            exit_codes.append(await replica.wait())
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
