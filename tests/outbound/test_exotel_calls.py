"""Outbound calls through Exotel, end to end: the real bridge and its Exotel dialer
(httpx) against a fake Connect Voice AI API on loopback (test double,
simulators/exotel_api.py) whose callees are the Exotel phone simulator.

The same path as Twilio's (admission, guard, leases, recording, outcome rows),
with Exotel's differences: no answer document (the stream connecting is the
answer), no answering-machine detection, no after-stream step, unsigned
callbacks checked by the Basic credentials in their URL, a call list that omits
ongoing calls.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from phonebridge.local import PUBLIC_URL
from phonebridge.outbound.campaigns import CampaignRunner
from phonebridge.outbound.carrier import CarrierError, DialRequest
from phonebridge.outbound.store import Attempt
from phonebridge.simulators.twilio_api import Callee
from phonebridge.telephony.exotel.auth import basic_header
from phonebridge.telephony.exotel.dialer import (
    ExotelDialer,
    call_status,
    exotel_time,
    stream_url,
)

from ..conftest import BridgeFactory
from .carriers import EXOPHONE, EXOTEL_SID, ExotelOutbounds, eventually, start_exotel
from .carriers import EXOTEL_API_KEY as API_KEY
from .carriers import EXOTEL_API_TOKEN as API_TOKEN
from .carriers import EXOTEL_HUMAN as HUMAN
from .carriers import EXOTEL_PASSWORD as PASSWORD
from .carriers import EXOTEL_USER as USER
from .conftest import claim

MACHINE = "+919876543212"
OTHER = "+919876543213"

Factory = Callable[..., AbstractAsyncContextManager[ExotelOutbounds]]


@pytest.fixture(name="start_exotel")
def exotel_factory(start_bridge: BridgeFactory) -> Factory:
    return start_exotel(start_bridge)


# -- the words ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "event", "expected"),
    [
        ("completed", "terminal", "completed"),
        ("busy", "terminal", "busy"),
        ("no-answer", "terminal", "no-answer"),
        ("failed", "terminal", "failed"),
        ("Completed", "", "completed"),
        ("in-progress", "", "in-progress"),
        ("", "answered", "in-progress"),
        ("completed", "answered", "in-progress"),
        ("cancelled", "", "canceled"),
        ("ringing", "", "ringing"),
        ("exploded", "terminal", None),
        ("", "", None),
    ],
)
def test_exotel_status_words(status: str, event: str, expected: str | None) -> None:
    assert call_status(status, event) == expected


def test_stream_url_is_wss_with_rate_attempt_and_credentials() -> None:
    url = stream_url(
        "https://bridge.example/twilio/r/a/outbound/exotel/media?attempt=oa_1",
        sample_rate=16_000,
        attempt_id="oa_1",
        user="us er",
        password="p@ss",
    )
    parts = urlsplit(url)
    assert parts.scheme == "wss"
    assert (parts.username, parts.password) == ("us%20er", "p%40ss")
    assert parts.path == "/twilio/r/a/outbound/exotel/media"
    assert dict(parse_qsl(parts.query)) == {"sample-rate": "16000", "attempt": "oa_1"}
    with pytest.raises(CarrierError, match="600"):
        stream_url(
            "https://b.example/" + "x" * 600, sample_rate=8000, attempt_id="a", user="", password=""
        )
    with pytest.raises(CarrierError, match="Hz"):
        stream_url("https://b.example/m", sample_rate=44_100, attempt_id="a", user="", password="")


def test_exotel_times_are_india_time() -> None:
    assert exotel_time(datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)) == "2025-01-01 05:30:00"


# -- calls ------------------------------------------------------------------------


async def test_a_person_answers_on_exotel(start_exotel: Factory) -> None:
    async with start_exotel({HUMAN: Callee("human", talk=0.8)}) as o:
        response = await o.call(to=HUMAN, persona="ex")
        assert response.status_code == 201, response.text
        attempt_id = response.json()["id"]
        ended = await o.ended(attempt_id)
        assert ended.outcome == "answered"
        assert ended.answered_by == "unknown"  # Exotel detects no machines: said so
        (call,) = o.api.created
        assert ended.call_sid == call.sid  # Exotel's id, for its REST API
        form = call.form
        assert (form["From"], form["CallerId"]) == (HUMAN, EXOPHONE)
        assert form["StreamType"] == "bidirectional"
        assert form["CustomField"] == attempt_id
        assert call.events == ("answered", "terminal")
        stream = urlsplit(form["StreamUrl"])
        assert stream.scheme == "wss"
        assert (stream.username, stream.password) == (USER, PASSWORD)
        assert stream.path == "/twilio/outbound/exotel/media"
        assert dict(parse_qsl(stream.query)) == {"sample-rate": "16000", "attempt": attempt_id}
        assert call.report is not None
        assert call.report.upgrade_status == 101  # the Basic credentials were accepted
        assert call.report.sample_rate == 16_000
        assert call.report.frames_received > 0  # the persona spoke to the callee
        assert call.report.custom_parameters == {"attempt": attempt_id}
        assert [p["EventType"] for p, status in call.callbacks] == ["answered", "terminal"]
        assert all(status == 204 for _, status in call.callbacks)
        row = await o.row(call.sid)
        assert row.end_reason == "caller_hangup"
        assert row.channel == "exotel"
        assert row.placed_by == "operator"
        assert (row.to_number, row.from_number) == (HUMAN, EXOPHONE)
        assert row.recording_path is not None
        await eventually(lambda: o.active_calls == 0)
        assert o.twilio.requests == []


async def test_a_dial_time_session_is_the_answered_streams(start_exotel: Factory) -> None:
    async with start_exotel({HUMAN: Callee("human", talk=0.8)}) as o:
        response = await o.call(to=HUMAN, persona="exdial")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "answered"
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.first_agent_audio_after_start_s is not None
        assert (await o.row(call.sid)).end_reason == "caller_hangup"
        await eventually(lambda: o.active_calls == 0)


async def test_a_machine_is_talked_to_like_a_person_on_exotel(start_exotel: Factory) -> None:
    """No AMD at Exotel: a hang-up persona cannot be honoured; the call runs as a
    conversation (the machine records it) and the attempt says who answered: unknown."""
    async with start_exotel({MACHINE: Callee("machine", greeting=0.4)}) as o:
        response = await o.call(to=MACHINE, persona="ex")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "answered"
        assert ended.answered_by == "unknown"
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.ended_by == "caller"  # the machine stopped recording
        assert (await o.row(call.sid)).end_reason == "caller_hangup"


async def test_a_voicemail_persona_is_refused_before_exotel_is_asked(start_exotel: Factory) -> None:
    async with start_exotel({MACHINE: Callee("machine")}) as o:
        response = await o.call(to=MACHINE, persona="exreminder")
        assert response.status_code == 409
        assert "detects no answering machines" in response.json()["error"]
        assert o.api.requests == []
        assert await o.outbound.store.attempts_for() == []  # refused before the claim
        assert o.active_calls == 0


async def test_a_voicemail_campaign_on_exotel_is_paused_not_claimed_tick_after_tick(
    start_exotel: Factory,
) -> None:
    async with start_exotel({MACHINE: Callee("machine")}) as o:
        runner: CampaignRunner = o.bridge.app.state.deps.outbound[1]
        created = await o.http.post(
            o.bridge.url + "/api/campaigns",
            json={"name": "reminders", "persona": "exreminder", "contacts": [{"number": MACHINE}]},
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        assert await runner.tick(datetime.now(UTC)) == 0
        campaign = await o.outbound.store.campaign(campaign_id)
        assert campaign is not None
        assert campaign.state == "paused"
        assert await o.outbound.store.attempts_for() == []  # no contact was claimed
        assert o.api.requests == []


async def test_opt_out_on_exotel_lands_on_dnc_and_hangs_up(start_exotel: Factory) -> None:
    """The goodbye cannot be said (no TTS, no step after the stream): the call ends."""
    async with start_exotel({HUMAN: Callee("human", talk=10.0, dtmf=((0.5, "9"),))}) as o:
        response = await o.call(to=HUMAN, persona="ex")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "opted_out"
        assert await o.outbound.store.is_dnc(HUMAN)
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.ended_by == "bridge"  # our socket closed: the call ended
        assert call.report.said == []
        assert (await o.row(call.sid)).end_reason == "opted_out"


async def test_exotel_callbacks_and_socket_need_the_credentials(start_exotel: Factory) -> None:
    async with start_exotel({HUMAN: Callee("human", ring=1.5, talk=0.5)}) as o:
        response = await o.call(to=HUMAN, persona="ex")
        attempt_id = response.json()["id"]
        await eventually(lambda: o.api.created)
        (call,) = o.api.created
        path = f"/twilio/outbound/exotel/status?attempt={attempt_id}"
        form = {"CallSid": call.sid, "Status": "busy", "EventType": "terminal"}
        forged = {"Authorization": basic_header(USER, "wrong")}
        assert (await o.http.post(o.bridge.url + path, data=form)).status_code == 403
        assert (
            await o.http.post(o.bridge.url + path, data=form, headers=forged)
        ).status_code == 403
        good = {"Authorization": basic_header(USER, PASSWORD)}
        stolen = {**form, "CustomField": "oa_" + "1" * 24}
        assert (
            await o.http.post(o.bridge.url + path, data=stolen, headers=good)
        ).status_code == 403
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                o.bridge.url.replace("http", "ws")
                + f"/twilio/outbound/exotel/media?attempt={attempt_id}",
                additional_headers=forged,
            ):
                pass
        assert refused.value.response.status_code == 403
        # Nothing changed: the call rings on, is answered and ends as a conversation.
        ended = await o.ended(attempt_id)
        assert ended.outcome == "answered"
        assert (await o.row(call.sid)).end_reason == "caller_hangup"
        # A well-authenticated callback for an unknown attempt settles nothing.
        unknown = "/twilio/outbound/exotel/status?attempt=oa_" + "0" * 24
        assert (
            await o.http.post(o.bridge.url + unknown, data=form, headers=good)
        ).status_code == 204


async def _claim(o: ExotelOutbounds, to: str, age: timedelta) -> Attempt:
    at = datetime.now(UTC) - age
    return await claim(
        o.outbound.store, to, carrier="exotel", at=at, persona="ex", from_number=EXOPHONE
    )


async def test_an_exotel_claim_cut_by_a_crash_is_looked_up_never_redialled(
    start_exotel: Factory,
) -> None:
    async with start_exotel({HUMAN: Callee("busy"), OTHER: Callee("busy")}) as o:
        o.api.page_size_cap = 1  # the lookup follows NextPageUri
        # Old enough that no call of theirs can still be live (TimeLimit has passed).
        lost, reached = (
            await _claim(o, HUMAN, timedelta(hours=2)),
            await _claim(o, OTHER, timedelta(hours=2)),
        )
        dialer = ExotelDialer(
            o.http,
            account_sid=EXOTEL_SID,
            api_key=API_KEY,
            api_token=API_TOKEN,
            api_url=o.api.url,
            basic_user=USER,
            basic_password=PASSWORD,
            wall_clock=lambda: datetime.now(UTC),
        )
        url = o.outbound.config.callback_url
        for _ in range(2):  # the dead process's request, and another call to the same number
            await dialer.place(
                DialRequest(
                    attempt_id=reached.id,
                    to=OTHER,
                    from_=EXOPHONE,
                    # its status callbacks were lost with it
                    callback_url=lambda kind: (
                        url(f"exotel/{kind}", reached.id)
                        if kind == "media"
                        else PUBLIC_URL + "/nowhere"
                    ),
                    ring_seconds=30,
                    machine="hangup",
                    sample_rate=16000,
                )
            )
        await o.api.wait_ended()
        # The states below are the proof: the bridge's own campaign runner may
        # have reconciled some of these already, so the count of this pass is not.
        await o.outbound.reconcile()
        released = await o.outbound.store.attempt(lost.id)
        assert released is not None
        assert released.outcome == "not_placed"
        adopted = await o.outbound.store.attempt(reached.id)
        assert adopted is not None
        assert adopted.outcome == "busy"
        first = o.api.created[0]
        assert adopted.call_sid == first.sid
        assert (await o.row(first.sid)).end_reason == "line_busy"
        lists = [p for m, p in o.api.requests if m == "GET" and p.endswith("/Calls.json")]
        assert len(lists) >= 3  # HUMAN's empty page; OTHER's two pages
        assert o.twilio.requests == []


async def test_a_recent_exotel_claim_with_no_listed_call_is_kept(start_exotel: Factory) -> None:
    """Exotel's list omits ongoing calls: a claim young enough that its call could still
    be live is not released (released, its contact could be rung twice)."""
    async with start_exotel() as o:
        young = await _claim(o, HUMAN, timedelta(minutes=2))
        assert await o.outbound.reconcile() == 0
        kept = await o.outbound.store.attempt(young.id)
        assert kept is not None
        assert kept.state == "claimed"
        assert any(p.endswith("/Calls.json") for m, p in o.api.requests if m == "GET")
        assert o.api.created == []
