"""Campaigns end to end under an injected wall clock: concurrency, retries, calling
windows across time zones, do-not-call, pause/resume/cancel, crash recovery of claims."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from phonebridge.local import DEMO_AUTH_TOKEN
from phonebridge.outbound.carrier import DialRequest
from phonebridge.outbound.numbers import CallingWindow, window_open, zones_for
from phonebridge.simulators.twilio_api import Callee
from phonebridge.telephony.twilio.dialer import TwilioDialer

from .carriers import ACCOUNT, CALLER_ID, eventually
from .conftest import FakeWall, OutboundFactory, Outbounds, claim

START = datetime(2025, 1, 15, 14, 0, tzinfo=UTC)  # 09:00 Toronto, 06:00 Los Angeles, 23:00 Tokyo

TORONTO = [f"+1416555{n:04d}" for n in range(200, 220)]  # 20
LOS_ANGELES = [f"+1213555{n:04d}" for n in range(300, 315)]  # 15
TOKYO = [f"+1647555{n:04d}" for n in range(400, 410)]  # 10, time zone given by the row
DNC = [f"+1416555{n:04d}" for n in range(500, 505)]  # 5
NO_ANSWER = set(TORONTO[:4])
BUSY = set(TORONTO[4:7])


async def progress(o: Outbounds, campaign_id: str) -> dict:  # type: ignore[type-arg]
    body = (await o.http.get(f"{o.bridge.url}/api/campaigns/{campaign_id}")).json()
    return body  # type: ignore[no-any-return]


async def settled_at(o: Outbounds, campaign_id: str, attempts: int) -> dict:  # type: ignore[type-arg]
    async def check() -> dict | None:  # type: ignore[type-arg]
        body = await progress(o, campaign_id)
        p = body["progress"]
        done = p["attempts"] == attempts and not p["states"].get("dialing")
        return body if done else None

    return await eventually(check, within=60)  # type: ignore[no-any-return]


async def test_fifty_contacts_three_at_a_time(start_outbound: OutboundFactory) -> None:
    wall = FakeWall(START.timestamp())
    callees = {n: Callee("no-answer") for n in NO_ANSWER}
    callees |= {n: Callee("busy") for n in BUSY}
    for n in TORONTO + LOS_ANGELES + TOKYO:
        callees.setdefault(n, Callee("human", talk=0.2))
    async with start_outbound(callees, wall_clock=wall) as o:
        for number in DNC:
            added = await o.http.post(o.bridge.url + "/api/dnc", json={"number": number})
            assert added.status_code == 201
        contacts = (
            [{"number": n} for n in TORONTO[:10]]
            + [{"number": n} for n in DNC]
            + [{"number": n, "variables": {"city": "LA"}} for n in LOS_ANGELES]
            + [{"number": n, "time_zone": "Asia/Tokyo"} for n in TOKYO]
            + [{"number": n} for n in TORONTO[10:]]
        )
        assert len(contacts) == 50
        created = await o.http.post(
            o.bridge.url + "/api/campaigns",
            json={
                "name": "pickup reminders",
                "persona": "citysan",
                "concurrency": 3,
                "max_attempts": 2,
                "retry_seconds": 600,
                "contacts": contacts,
            },
        )
        assert created.status_code == 201, created.text
        campaign = created.json()
        assert campaign["created_by"] == "operator"
        cid = campaign["id"]

        # 14:00 UTC: only Toronto is inside 08:00-21:00; the busy/no-answer ones wait.
        body = await settled_at(o, cid, attempts=20)
        assert body["progress"]["states"]["skipped"] == 5  # DNC, never dialled
        called = Counter(call.to for call in o.api.created)
        assert set(called) == set(TORONTO)

        # 14:11: the retry spacing has passed; the 7 are tried a second (last) time.
        wall.now = (START + timedelta(minutes=11)).timestamp()
        await settled_at(o, cid, attempts=27)
        called = Counter(call.to for call in o.api.created)
        assert {n for n, times in called.items() if times == 2} == NO_ANSWER | BUSY

        # 17:00: 09:00 in Los Angeles; Tokyo is at 02:00.
        wall.now = (START + timedelta(hours=3)).timestamp()
        await settled_at(o, cid, attempts=42)
        assert not {call.to for call in o.api.created} & set(TOKYO)

        # 23:30: 08:30 in Tokyo.
        wall.now = (START + timedelta(hours=9, minutes=30)).timestamp()
        body = await settled_at(o, cid, attempts=52)
        await eventually(lambda: _finished(o, cid), within=10)

        assert o.api.max_active <= 3
        called = Counter(call.to for call in o.api.created)
        assert not set(called) & set(DNC)
        assert all(called[n] == 1 for n in called if n not in NO_ANSWER | BUSY)
        outcomes = body["progress"]["outcomes"]
        assert outcomes["no_answer"] == 4
        assert outcomes["busy"] == 3
        assert outcomes["answered"] == 38
        assert outcomes["dnc"] == 5

        window = CallingWindow()
        zone_of = {n: "Asia/Tokyo" for n in TOKYO}
        for attempt in await o.outbound.store.attempts_for(campaign_id=cid):
            zones = zones_for(attempt.to_number, zone_of.get(attempt.to_number))
            assert window_open(window, zones, attempt.created_at), attempt
            assert attempt.placed_by == f"campaign:{cid}"
        la = [
            a
            for a in await o.outbound.store.attempts_for(campaign_id=cid)
            if a.to_number in LOS_ANGELES
        ]
        assert all(a.variables == {"city": "LA"} for a in la)


async def _finished(o: Outbounds, cid: str) -> bool:
    body = (await o.http.get(f"{o.bridge.url}/api/campaigns/{cid}")).json()
    return bool(body["state"] == "finished")


async def test_pause_resume_cancel(start_outbound: OutboundFactory) -> None:
    wall = FakeWall(START.timestamp())
    async with start_outbound(wall_clock=wall) as o:
        url = o.bridge.url + "/api/campaigns"
        first = (
            await o.http.post(
                url,
                json={
                    "name": "later",
                    "persona": "citysan",
                    "contacts_csv": "number,time_zone,name\n"
                    + "".join(f"{n},Asia/Tokyo,Ada\n" for n in TOKYO[:3]),
                },
            )
        ).json()
        second = (
            await o.http.post(
                url,
                json={
                    "name": "never",
                    "persona": "citysan",
                    "contacts": [{"number": n, "time_zone": "Asia/Tokyo"} for n in TOKYO[3:6]],
                },
            )
        ).json()
        assert (await o.http.post(f"{url}/{first['id']}/pause")).json()["state"] == "paused"
        assert (await o.http.post(f"{url}/{first['id']}/pause")).status_code == 409
        cancelled = await o.http.post(f"{url}/{second['id']}/cancel")
        assert cancelled.json()["state"] == "cancelled"
        wall.now = (START + timedelta(hours=9, minutes=30)).timestamp()  # Tokyo window open
        await asyncio.sleep(1.5)  # more than a scheduler tick
        assert o.api.requests == []
        assert (await o.http.post(f"{url}/{first['id']}/resume")).json()["state"] == "running"
        await eventually(lambda: _finished(o, first["id"]), within=20)
        assert sorted(c.to for c in o.api.created) == sorted(TOKYO[:3])
        attempts = await o.outbound.store.attempts_for(campaign_id=first["id"])
        assert {a.variables["name"] for a in attempts} == {"Ada"}
        body = (await o.http.get(f"{url}/{second['id']}")).json()
        assert body["state"] == "cancelled"
        assert body["progress"]["states"] == {"cancelled": 3}


async def test_bad_uploads_are_refused_whole(start_outbound: OutboundFactory) -> None:
    async with start_outbound() as o:
        url = o.bridge.url + "/api/campaigns"
        cases = [
            ({"contacts_csv": "phone\n+14165550111\n"}, "'number' column"),
            ({"contacts_csv": "number\n+14165550111\n+4420\n"}, "contact 2"),
            ({"contacts": [{"number": TOKYO[0], "time_zone": "Mars/Base"}]}, "unknown time zone"),
            ({"contacts": []}, "empty"),
            ({"contacts": [{"number": TOKYO[0]}], "concurrency": 0}, "concurrency"),
        ]
        for extra, message in cases:
            response = await o.http.post(url, json={"name": "x", "persona": "citysan", **extra})
            assert response.status_code == 400, response.text
            assert message in response.json()["error"]
        assert (await o.http.get(url)).json()["items"] == []


async def test_a_claim_cut_by_a_crash_is_looked_up_never_redialled(
    start_outbound: OutboundFactory,
) -> None:
    async with start_outbound({TORONTO[0]: Callee("busy"), TORONTO[1]: Callee("busy")}) as o:
        store = o.outbound.store
        wall = datetime.now(UTC)
        lost = await claim(store, TORONTO[0], carrier="twilio", at=wall - timedelta(minutes=2))
        reached = await claim(store, TORONTO[1], carrier="twilio", at=wall - timedelta(minutes=2))
        # The dead process's REST request for `reached` got to Twilio; `lost`'s never did.
        dialer = TwilioDialer(ACCOUNT, DEMO_AUTH_TOKEN, api_base_url=o.api.url)
        url = o.outbound.config.callback_url
        await dialer.place(
            DialRequest(
                attempt_id=reached.id,
                to=TORONTO[1],
                from_=CALLER_ID,
                # its status callbacks were lost with it: only the answer URL is real
                callback_url=lambda kind: url(kind, reached.id) if kind == "answer" else "",
                ring_seconds=30,
                machine="hangup",
                sample_rate=8000,
            )
        )
        await o.api.wait_ended()
        # The states below are the proof: the bridge's own campaign runner may
        # have reconciled some of these already, so the count of this pass is not.
        await o.outbound.reconcile()
        released = await store.attempt(lost.id)
        assert released is not None
        assert released.outcome == "not_placed"
        adopted = await store.attempt(reached.id)
        assert adopted is not None
        assert adopted.outcome == "busy"
        assert adopted.call_sid == o.api.created[0].sid
        assert len(o.api.created) == 1  # nobody was dialled by the recovery


async def test_at_start_a_replica_resolves_only_its_own_fresh_claims(
    start_outbound: OutboundFactory,
) -> None:
    async with start_outbound() as o:
        store = o.outbound.store
        wall = datetime.now(UTC)
        claims = {}
        for replica, number in ((o.outbound.config.replica, TORONTO[0]), ("r-live", TORONTO[1])):
            claims[replica] = await claim(store, number, carrier="twilio", at=wall, replica=replica)
        # This replica just started: nothing of its own is in flight. The other
        # replica's claim is a second old: its REST request may be running now.
        assert await o.outbound.reconcile(at_start=True) == 1
        mine = await store.attempt(claims[o.outbound.config.replica].id)
        assert mine is not None
        assert mine.outcome == "not_placed"
        theirs = await store.attempt(claims["r-live"].id)
        assert theirs is not None
        assert theirs.state == "claimed"
        assert await o.outbound.reconcile() == 0  # and not by a later pass either, yet
        assert o.api.created == []
