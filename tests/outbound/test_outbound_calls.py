"""One outbound call at a time, end to end: the real bridge and twilio client, a fake
Twilio Calls API on loopback (test double), the phone simulator as the callee."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.simulators.twilio_api import Callee
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from ..conftest import record_of
from .carriers import CALLER_ID, eventually
from .conftest import OutboundFactory

HUMAN = "+14165550111"
MACHINE = "+14165550112"


async def attempt_ended(outbounds, attempt_id: str):  # type: ignore[no-untyped-def]
    async def ended():  # type: ignore[no-untyped-def]
        found = await outbounds.outbound.store.attempt(attempt_id)
        return found if found is not None and found.state == "ended" else None

    return await eventually(ended)


async def test_a_person_answers(start_outbound: OutboundFactory) -> None:
    async with start_outbound({HUMAN: Callee("human", talk=0.8)}) as o:
        response = await o.call(to=HUMAN, persona="citysan", variables={"name": "Ada"})
        assert response.status_code == 201, response.text
        attempt = response.json()
        assert attempt["placed_by"] == "operator:alice"
        assert attempt["from_number"] == CALLER_ID
        assert attempt["variables"] == {"name": "Ada"}
        ended = await attempt_ended(o, attempt["id"])
        assert ended.outcome == "answered"
        assert ended.answered_by == "human"
        row = await record_of(o.bridge, ended.call_sid)
        assert row.end_reason == "caller_hangup"
        assert row.to_number == HUMAN
        assert row.from_number == CALLER_ID
        assert row.recording_path is not None
        (call,) = o.api.created
        assert call.machine_detection == "Enable"  # the persona hangs up on machines
        assert call.report is not None
        assert call.report.frames_received > 0
        assert call.url.startswith(PUBLIC_URL + "/twilio/outbound/answer?attempt=")


async def test_a_replica_writes_its_callbacks_under_its_own_path(
    start_outbound: OutboundFactory,
) -> None:
    async with start_outbound({HUMAN: Callee("human", talk=0.4)}, replica_id="r7") as o:
        response = await o.call(to=HUMAN, persona="citysan")
        assert response.status_code == 201, response.text
        ended = await attempt_ended(o, response.json()["id"])
        assert ended.outcome == "answered"
        (call,) = o.api.created
        # the edge proxy routes /twilio/r/<id>/ to the replica holding the call
        assert call.url.startswith(PUBLIC_URL + "/twilio/r/r7/outbound/answer?attempt=")
        assert call.status_callback.startswith(PUBLIC_URL + "/twilio/r/r7/outbound/status?")
        assert call.report is not None
        assert call.report.stream_url is not None
        assert "/twilio/r/r7/media" in call.report.stream_url
        assert ended.replica == "r7"
        assert (await record_of(o.bridge, ended.call_sid)).end_reason == "caller_hangup"


async def test_machine_gets_the_voicemail_after_the_beep(start_outbound: OutboundFactory) -> None:
    async with start_outbound({MACHINE: Callee("machine", greeting=0.6)}) as o:
        response = await o.call(to=MACHINE, persona="reminder")
        assert response.status_code == 201, response.text
        ended = await attempt_ended(o, response.json()["id"])
        assert ended.outcome == "voicemail"
        assert ended.answered_by == "machine_end_beep"
        (call,) = o.api.created
        assert call.machine_detection == "DetectMessageEnd"
        report = call.report
        assert report is not None
        # the bridge ended the stream on the after-the-beep verdict (the only one
        # DetectMessageEnd sends), then Twilio was told to <Say> it; no timing asserted
        assert report.ended_by == "bridge"
        assert report.bytes_sent > 0  # the greeting reached the bridge first
        assert report.said == ["Hello, this is CitySan reminding you that pickup is on Tuesday."]
        row = await record_of(o.bridge, ended.call_sid)
        assert row.end_reason == "voicemail"


async def test_machine_is_hung_up_on(start_outbound: OutboundFactory) -> None:
    async with start_outbound({MACHINE: Callee("machine", greeting=3.0)}) as o:
        response = await o.call(to=MACHINE, persona="citysan")
        ended = await attempt_ended(o, response.json()["id"])
        assert ended.outcome == "machine_hangup"
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.said == []
        assert "Hangup" in call.report.twiml_verbs
        assert (await record_of(o.bridge, ended.call_sid)).end_reason == "machine_hangup"


@pytest.mark.parametrize(
    ("kind", "outcome", "end_reason"),
    [
        ("no-answer", "no_answer", "no_answer"),
        ("busy", "busy", "line_busy"),
        ("failed", "failed", "dial_failed"),
    ],
)
async def test_unanswered_calls_end_in_their_outcome_row(
    start_outbound: OutboundFactory, kind: str, outcome: str, end_reason: str
) -> None:
    async with start_outbound({HUMAN: Callee(kind)}) as o:  # type: ignore[arg-type]
        response = await o.call(to=HUMAN, persona="citysan")
        assert response.status_code == 201
        ended = await attempt_ended(o, response.json()["id"])
        assert ended.outcome == outcome
        row = await record_of(o.bridge, ended.call_sid)
        assert row.end_reason == end_reason
        assert row.to_number == HUMAN
        assert o.bridge.app.state.deps.bridge.admission.active_calls == 0


async def test_dial_time_model_is_released_when_nobody_answers(
    start_outbound: OutboundFactory,
) -> None:
    async with start_outbound({HUMAN: Callee("no-answer", ring=0.5)}) as o:
        bridge = o.bridge.app.state.deps.bridge
        response = await o.call(to=HUMAN, persona="dialtime")
        assert response.status_code == 201
        # the model session opened while the phone rang: a lease is held
        assert bridge.admission.active_calls == 1
        ended = await attempt_ended(o, response.json()["id"])
        assert ended.outcome == "no_answer"
        await eventually(lambda: bridge.admission.active_calls == 0)
        assert (await record_of(o.bridge, ended.call_sid)).end_reason == "no_answer"


async def test_dial_time_model_is_claimed_on_answer(start_outbound: OutboundFactory) -> None:
    async with start_outbound({HUMAN: Callee("human", talk=0.6)}) as o:
        response = await o.call(to=HUMAN, persona="dialtime")
        ended = await attempt_ended(o, response.json()["id"])
        assert ended.outcome == "answered"
        row = await record_of(o.bridge, ended.call_sid)
        assert row.end_reason == "caller_hangup"
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.first_agent_audio_after_start_s is not None


@pytest.mark.parametrize("persona", ["citysan", "dialtime"])
async def test_the_guard_counts_the_number_we_ring(
    start_outbound: OutboundFactory, persona: str
) -> None:
    """Outbound calls pass the inbound toll-fraud guard (Bridge.admit): per number
    rung, checked before the REST request; a ringing call holds its slot."""
    other = "+14165550113"
    callees = {HUMAN: Callee("no-answer", ring=0.3), other: Callee("no-answer", ring=0.3)}
    async with start_outbound(callees, caller_max_calls_per_hour=1, caller_max_concurrent=1) as o:
        bridge = o.bridge.app.state.deps.bridge
        first = await o.call(to=HUMAN, persona=persona)
        assert first.status_code == 201, first.text
        assert bridge.guard.active_calls(HUMAN) == 1  # it rings: it holds a slot
        ended = await attempt_ended(o, first.json()["id"])
        assert ended.outcome == "no_answer"
        await eventually(lambda: bridge.guard.active_calls(HUMAN) == 0)
        again = await o.call(to=HUMAN, persona=persona)
        assert again.status_code == 429, again.text
        assert "rate limit" in again.json()["error"]
        assert [c.to for c in o.api.created] == [HUMAN]  # no REST request for it
        # the same caller ID may ring someone else: the guard counts the callee
        third = await o.call(to=other, persona=persona)
        assert third.status_code == 201, third.text
        await attempt_ended(o, third.json()["id"])
        await eventually(lambda: bridge.admission.active_calls == 0)
        refused = [a for a in await o.outbound.store.attempts_for() if a.outcome == "not_placed"]
        assert [a.to_number for a in refused] == [HUMAN]


async def test_opt_out_by_dtmf_lands_on_dnc_and_ends_politely(
    start_outbound: OutboundFactory,
) -> None:
    async with start_outbound({HUMAN: Callee("human", talk=10.0, dtmf=((0.5, "9"),))}) as o:
        response = await o.call(to=HUMAN, persona="reminder")
        ended = await attempt_ended(o, response.json()["id"])
        assert ended.outcome == "opted_out"
        assert await o.outbound.store.is_dnc(HUMAN)
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.said == ["You will not be called again. Goodbye from CitySan."]
        assert call.report.stream_duration_s is not None
        assert call.report.stream_duration_s < 5
        assert (await record_of(o.bridge, ended.call_sid)).end_reason == "opted_out"
        listed = (await o.http.get(o.bridge.url + "/api/dnc")).json()["items"]
        assert [item["number"] for item in listed] == [HUMAN]
        # the number is not dialled again
        again = await o.call(to=HUMAN, persona="reminder")
        assert again.status_code == 409
        assert "do-not-call" in again.json()["error"]
        assert len(o.api.created) == 1


async def test_disabled_means_403_and_no_rest_request(start_outbound: OutboundFactory) -> None:
    async with start_outbound(outbound_enabled=False) as o:
        response = await o.call(to=HUMAN, persona="citysan")
        assert response.status_code == 403
        assert "disabled" in response.json()["error"]
        campaign = await o.http.post(
            o.bridge.url + "/api/campaigns",
            json={"name": "x", "persona": "citysan", "contacts": [{"number": HUMAN}]},
        )
        assert campaign.status_code == 403
        assert o.api.requests == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"to": "4165550111", "persona": "citysan"}, 400, "E.164"),
        ({"to": "+1416555", "persona": "citysan"}, 400, "not a valid phone number"),
        ({"to": "+442071838750", "persona": "citysan"}, 400, "country code +44"),
        ({"to": HUMAN, "persona": "nobody"}, 404, "no persona 'nobody'"),
        ({"to": HUMAN, "persona": "citysan", "from": "+14165550999"}, 400, "caller ID"),
    ],
)
async def test_refusals_are_clear_and_cost_nothing(
    start_outbound: OutboundFactory, body: dict[str, str], status: int, message: str
) -> None:
    async with start_outbound() as o:
        response = await o.call(**body)
        assert response.status_code == status
        assert message in response.json()["error"]
        assert o.api.requests == []


async def test_callbacks_must_be_signed(start_outbound: OutboundFactory) -> None:
    async with start_outbound({HUMAN: Callee("no-answer", ring=5.0)}) as o:
        attempt = (await o.call(to=HUMAN, persona="citysan")).json()
        path = f"/twilio/outbound/status?attempt={attempt['id']}"
        form = {"CallSid": "CA" + "1" * 32, "CallStatus": "busy"}
        unsigned = await o.http.post(o.bridge.url + path, data=form)
        assert unsigned.status_code == 403
        forged = await o.http.post(
            o.bridge.url + path,
            data=form,
            headers={SIGNATURE_HEADER: sign("not-the-token", PUBLIC_URL + path, form)},
        )
        assert forged.status_code == 403
        found = await o.outbound.store.attempt(attempt["id"])
        assert found is not None
        assert found.state == "dialing"
        # signed, and for a replica that is gone (the edge gave it to this one):
        # settled from the shared rows
        elsewhere = f"/twilio/r/gone-1/outbound/status?attempt={attempt['id']}"
        signed = await o.http.post(
            o.bridge.url + elsewhere,
            data=form,
            headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, PUBLIC_URL + elsewhere, form)},
        )
        assert signed.status_code == 204
        settled = await o.outbound.store.attempt(attempt["id"])
        assert settled is not None
        assert (settled.state, settled.outcome) == ("ended", "busy")


async def run_cli(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phonebridge.cli", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, json.loads(out)


async def test_the_cli_places_calls_and_campaigns(
    start_outbound: OutboundFactory, tmp_path: Path
) -> None:
    ringing = {HUMAN: Callee("human", talk=0.3), "+14165550120": Callee("no-answer", ring=5.0)}
    async with start_outbound(ringing) as o:
        url = o.bridge.url
        code, attempt = await run_cli(
            "call",
            "--to",
            HUMAN,
            "--persona",
            "citysan",
            "--var",
            "name=Ada",
            "--operator",
            "bob",
            "--url",
            url,
        )
        assert code == 0
        assert attempt["placed_by"] == "operator:bob"
        assert attempt["variables"] == {"name": "Ada"}
        code, refused = await run_cli("call", "--to", "+4420", "--persona", "citysan", "--url", url)
        assert code == 1
        assert "E.164" in refused["error"] or "valid" in refused["error"]
        contacts = tmp_path / "contacts.csv"
        contacts.write_text("number,time_zone,name\n+14165550120,America/Toronto,Ada\n")
        code, campaign = await run_cli(
            "campaign",
            "create",
            str(contacts),
            "--name",
            "cli",
            "--persona",
            "citysan",
            "--window-start",
            "00:00",
            "--window-end",
            "24:00",
            "--url",
            url,
        )
        assert code == 0
        assert campaign["progress"]["contacts"] == 1
        code, paused = await run_cli("campaign", "pause", campaign["id"], "--url", url)
        assert code == 0
        assert paused["state"] == "paused"  # still ringing: the campaign was running


async def test_a_gone_replicas_outbound_call_hears_its_callers_persona(
    start_outbound: OutboundFactory,
) -> None:
    """The <Connect action> of a call a dead replica held: for a call we placed, the
    persona is our caller ID's (``From``), not the callee's number's."""
    shakshuka = "+14165550102"
    async with start_outbound() as o:
        path = "/twilio/r/gone-1/stream-ended"
        answers = {}
        for direction in ("outbound-api", "inbound"):
            form = {
                "CallSid": "CA" + ("2" if direction == "inbound" else "3") * 32,
                "From": shakshuka if direction != "inbound" else HUMAN,
                "To": HUMAN if direction != "inbound" else shakshuka,
                "Direction": direction,
            }
            response = await o.http.post(
                o.bridge.url + path,
                data=form,
                headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, PUBLIC_URL + path, form)},
            )
            assert response.status_code == 200
            answers[direction] = response.text
        assert "take your order by phone" in answers["outbound-api"]  # shakshuka's fallback
        assert answers["outbound-api"] == answers["inbound"]
