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

from ..conftest import HEAVY, tone_mulaw
from .conftest import ClusterFactory
from .helpers import SHAKSHUKA, SHAKSHUKA_FALLBACK, replica_of, until

pytestmark = HEAVY  # a whole cluster: one at a time (tests/conftest.py)

CALLS = 6


async def test_calls_spread_over_the_replicas_and_each_stream_lands_on_its_replica(
    start_cluster: ClusterFactory,
) -> None:
    async with start_cluster(pool_size=CALLS) as cluster:
        # The replicas started together on a fresh database: exactly one ran the
        # migrations (under PostgreSQL's advisory lock), the others found them done.
        migrated = [
            r.replica_id for r in cluster.replicas if "call index: schema empty ->" in r.log()
        ]
        assert len(migrated) == 1, migrated
        reports = await asyncio.gather(
            *(cluster.dial(from_=f"+1416555{n:04d}", audio=tone_mulaw(0.6)) for n in range(CALLS))
        )
        for report in reports:
            assert report.ok, report.protocol_errors
            assert report.ended_by == "caller"
            assert report.frames_received > 0  # the model echoed back
        landed = Counter(replica_of(report) for report in reports)
        # Round robin over three ready replicas: every one answered webhooks.
        assert set(landed) == {"pb-0", "pb-1", "pb-2"}
        # One model session per call on the shared pool, never two on a server.
        assert cluster.sessions() == CALLS
        assert cluster.second_connections() == []
        for replica in cluster.replicas:
            await replica.settle()  # every call torn down, every lease back
        for report in reports:
            record = await cluster.ended_record(report.call_sid)
            # The stream reached the replica whose webhook opened the model
            # session (its one-time token is known nowhere else): that replica
            # ran the call and wrote its row.
            assert record.replica == replica_of(report)
            assert record.end_reason == "caller_hangup"
            assert record.provider == "personaplex"

        # Every call is listed, through the proxy.
        listed = await cluster.api("/api/calls?limit=100")
        assert listed.status_code == 200
        sids = {item["call_sid"] for item in listed.json()["items"]}
        assert sids == {report.call_sid for report in reports}
        # Each replica uploads its calls' files to the object store once they end...

        async def all_stored() -> bool:
            records = [await cluster.ended_record(report.call_sid) for report in reports]
            return all(record.files_stored_at is not None for record in records)

        await until(all_stored, 15)
        # ...so every replica serves every call's recording (a Range request,
        # as a browser's audio element sends) and transcript: its own from its
        # spool, the others' from the bucket.
        for report in reports:
            for replica in cluster.replicas:
                part = await replica.get_with(
                    f"/api/calls/{report.call_sid}/recording.wav", {"Range": "bytes=0-43"}
                )
                assert part.status_code == 206, (replica.replica_id, part.text)
                assert part.content[:4] == b"RIFF"
                assert len(part.content) == 44
                assert part.headers["content-range"].startswith("bytes 0-43/")
                transcript = await replica.get(f"/api/calls/{report.call_sid}/transcript.json")
                assert transcript.status_code == 200
                assert transcript.json()["call_sid"] == report.call_sid
            # And through the proxy, the whole file.
            whole = await cluster.api(f"/api/calls/{report.call_sid}/recording.wav")
            assert whole.status_code == 200
            assert whole.content[:4] == b"RIFF"
            assert len(whole.content) == int(part.headers["content-range"].split("/")[1])


async def test_an_action_request_for_a_replica_that_is_gone_gets_the_fallback(
    start_cluster: ClusterFactory,
) -> None:
    """Through Caddy: a <Connect action> naming a replica nobody runs is answered by a survivor.

    Signed for the exact public URL (the replica path included), as Twilio signs it.
    """
    async with start_cluster(replicas=2, pool_size=1) as cluster:
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
        # pb-9 left no row for the call (killed before writing it): the survivor
        # that answered the fallback put the call on record.
        record = await cluster.ended_record(form["CallSid"])
        assert (record.end_reason, record.ended_by, record.to_number) == (
            "crashed",
            "bridge",
            SHAKSHUKA,
        )
        assert record.persona == "shakshuka"


async def test_a_webhook_retry_on_another_replica_gets_the_same_stream_and_a_replay_hangs_up(
    start_cluster: ClusterFactory,
) -> None:
    """Twilio retries a webhook it got no answer to; behind the proxy the retry may
    reach another replica than the one holding the call (and its model session)."""
    async with start_cluster(pool_size=2) as cluster:
        call_sid = "CA" + "5" * 32
        form = {
            "CallSid": call_sid,
            "AccountSid": "AC" + "1" * 32,
            "From": "+14165550777",
            "To": SHAKSHUKA,
            "CallStatus": "ringing",
        }
        signed = {SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, PUBLIC_URL + "/twilio/voice", form)}
        pb0, pb1, pb2 = cluster.replicas
        async with httpx.AsyncClient() as http:
            first = await http.post(pb0.url + "/twilio/voice", data=form, headers=signed)
            retry = await http.post(pb1.url + "/twilio/voice", data=form, headers=signed)
        assert first.status_code == retry.status_code == 200
        assert "/twilio/r/pb-0/media" in first.text
        assert retry.text == first.text  # same stream, same one-time token
        async with asyncio.timeout(5):
            await cluster.simulators[0].wait_for_connections(1)
        assert cluster.sessions() == 1  # the retry opened nothing

        # Twilio's retry through the proxy, then the stream: whichever replica
        # takes the webhook, the stream reaches pb-0 and claims the held session.
        report = await cluster.dial(from_="+14165550777", audio=tone_mulaw(0.5), call_sid=call_sid)
        assert report.ok, report.protocol_errors
        assert report.frames_received > 0
        assert replica_of(report) == "pb-0"
        assert cluster.sessions() == 1
        record = await cluster.ended_record(call_sid)
        assert (record.replica, record.end_reason) == ("pb-0", "caller_hangup")

        # The call was claimed: the same signed webhook is now a replay, on every replica.
        async with httpx.AsyncClient() as http:
            for replica in (pb0, pb1, pb2):
                replay = await http.post(replica.url + "/twilio/voice", data=form, headers=signed)
                assert replay.status_code == 200
                assert "<Hangup" in replay.text, (replica.replica_id, replay.text)
                assert "<Connect" not in replay.text
        assert cluster.sessions() == 1
