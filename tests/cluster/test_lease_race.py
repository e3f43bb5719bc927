"""Concurrent webhooks on every replica for one shared pool of K self-hosted servers.

Real ``phonebridge serve`` replicas leasing through one real Redis
(tests/cluster/helpers.py); the PersonaPlex simulators (TEST DOUBLES) record
any second concurrent connection to a server, the failure leases exist to
prevent: the real server swaps the first caller's persona (PROTOCOLS.md §2.1).
"""

from __future__ import annotations

import asyncio
import re

from ..conftest import HEAVY, tone_mulaw
from .conftest import ClusterFactory
from .helpers import replica_of

pytestmark = HEAVY  # a whole cluster: one at a time (tests/conftest.py)

K = 3
CALLS = 12


async def test_concurrent_webhooks_on_all_replicas_never_share_a_server(
    start_cluster: ClusterFactory,
) -> None:

    async with start_cluster(pool_size=K) as cluster:
        # Straight to each replica (no proxy in between to spread them out),
        # all at once; each call outlives the burst, so every lease is held
        # while the other replicas ask for one.
        replicas = cluster.replicas
        calls = [
            asyncio.create_task(
                cluster.dial(
                    from_=f"+1416559{n:04d}",
                    audio=tone_mulaw(2.0),
                    via=replicas[n % len(replicas)].url,
                )
            )
            for n in range(CALLS)
        ]
        async with asyncio.timeout(15):
            for sim in cluster.simulators:
                await sim.wait_for_connections(1)
        # Who holds what, as the alert rules read it: each server held by one replica.
        held: dict[str, int] = {}
        for replica in replicas:
            for server, value in re.findall(
                r'phonebridge_leases_held\{replica="[^"]+",server="([^"]+)"\} (\S+)',
                await replica.metrics(),
            ):
                held[server] = held.get(server, 0) + int(float(value))
        assert held == {sim.url: 1 for sim in cluster.simulators}
        reports = await asyncio.gather(*calls)

        # No server ever had two sessions, and exactly K were granted.
        assert cluster.second_connections() == []
        assert [len(sim.connections) for sim in cluster.simulators] == [1] * K
        served = [r for r in reports if r.stream_url is not None]
        busy = [r for r in reports if r.stream_url is None]
        assert len(served) == K
        assert len(busy) == CALLS - K
        for report in served:
            assert report.ok, report.protocol_errors
            assert report.frames_received > 0
            record = await cluster.ended_record(report.call_sid)
            assert (record.provider, record.end_reason) == ("personaplex", "caller_hangup")
            assert record.replica == replica_of(report)
        for report in busy:
            # Shakshuka has no overflow: the others hear the busy message.
            assert report.twiml_verbs == ["Say", "Hangup"]
            record = await cluster.ended_record(report.call_sid)
            assert record.end_reason == "busy"
        for replica in replicas:
            await replica.settle()
