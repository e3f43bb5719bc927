"""Three replicas behind a real Caddy: every stream reaches the replica holding its call.

Real ``phonebridge serve`` processes (tests/cluster/helpers.py), the Twilio
phone simulator and the PersonaPlex simulators are TEST DOUBLES; Caddy and the
bridge are the real thing, over real sockets on loopback.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from ..conftest import tone_mulaw
from .conftest import ClusterFactory
from .helpers import SHAKSHUKA, SHAKSHUKA_FALLBACK, replica_of

CALLS = 6


async def test_calls_spread_over_the_replicas_and_each_stream_lands_on_its_replica(
    start_cluster: ClusterFactory,
) -> None:
    async with start_cluster() as cluster:
        reports = await asyncio.gather(
            *(cluster.dial(from_=f"+1416555{n:04d}", audio=tone_mulaw(0.6)) for n in range(CALLS))
        )
        for report in reports:
            assert report.ok, report.protocol_errors
            assert report.ended_by == "caller"
            assert report.frames_received > 0  # the replica's model echoed back
        landed = Counter(replica_of(report) for report in reports)
        # Round robin over three ready replicas: every one answered webhooks.
        assert set(landed) == {"pb-0", "pb-1", "pb-2"}
        for replica in cluster.replicas:
            # The stream reached the replica that opened the model session: each
            # of its calls used one of its own servers, and only its calls did.
            sessions = sum(len(sim.connections) for sim in replica.simulators)
            assert sessions == landed[replica.replica_id]
            await replica.settle()  # every call torn down, every lease back

        # Every call is listed, and its recording and transcript fetched,
        # through the proxy from each replica in turn (round robin).
        listed = await cluster.api("/api/calls?limit=100")
        assert listed.status_code == 200
        sids = {item["call_sid"] for item in listed.json()["items"]}
        assert sids == {report.call_sid for report in reports}
        for report in reports:
            for _ in cluster.replicas:
                recording = await cluster.api(f"/api/calls/{report.call_sid}/recording.wav")
                assert recording.status_code == 200
                assert recording.content[:4] == b"RIFF"
                transcript = await cluster.api(f"/api/calls/{report.call_sid}/transcript.json")
                assert transcript.status_code == 200
            record = await cluster.record(report.call_sid)
            assert record is not None
            assert record.end_reason == "caller_hangup"


async def test_an_action_request_for_a_replica_that_is_gone_gets_the_fallback(
    start_cluster: ClusterFactory,
) -> None:
    """Through Caddy: a <Connect action> naming a replica nobody runs is answered by a survivor.

    Signed for the exact public URL (the replica path included), as Twilio signs it.
    """
    async with start_cluster(replicas=2, servers_per_replica=1) as cluster:
        form = {"CallSid": "CA" + "7" * 32, "AccountSid": "AC" + "1" * 32, "To": SHAKSHUKA}
        path = "/twilio/r/pb-9/stream-ended"
        async with httpx.AsyncClient() as http:
            signed = {SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, PUBLIC_URL + path, form)}
            answer = await http.post(cluster.url + path, data=form, headers=signed)
            assert answer.status_code == 200
            assert SHAKSHUKA_FALLBACK in answer.text
            # Signed for another path: refused, whichever replica took it.
            wrong = {SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, PUBLIC_URL + "/x", form)}
            assert (await http.post(cluster.url + path, data=form, headers=wrong)).status_code == (
                403
            )
            # A media stream for a replica nobody runs has nowhere to go.
            media = await http.get(cluster.url + "/twilio/r/pb-9/media")
            assert media.status_code == 502
