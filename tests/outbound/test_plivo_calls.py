"""Outbound calls through Plivo, end to end: the real bridge and its Plivo dialer pointed at
a fake Call API on loopback (test double, simulators/plivo_api.py) whose callees are the
Plivo phone simulator (``<Stream>`` socket, DTMF, REST transfer and hang-up).

The same path as Twilio's (admission, guard, leases, recording, outcome rows), with
Plivo's differences: a ``request_uuid`` that is the call's ``CallUUID`` (our SID is
derived from it), V3-signed callbacks, the ``<Stream>`` answer, machine detection without
a beep verdict (the voicemail document waits for it), and recovery through queued, live
and call detail records.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import pytest

from phonebridge.local import PUBLIC_URL
from phonebridge.outbound.carrier import DialRequest
from phonebridge.outbound.store import Attempt
from phonebridge.simulators.twilio_api import Callee
from phonebridge.telephony.plivo.dialer import PlivoDialer
from phonebridge.telephony.plivo.signature import (
    MAIN_ACCOUNT_SIGNATURE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    sign,
)

from ..conftest import BridgeFactory
from .carriers import CALLER_ID, HUMAN, PlivoOutbounds, eventually, start_plivo
from .carriers import PLIVO_AUTH_ID as AUTH_ID
from .carriers import PLIVO_AUTH_TOKEN as AUTH_TOKEN
from .conftest import claim

MACHINE = "+14165550122"
VOICEMAIL = "Hello, this is CitySan reminding you that pickup is on Tuesday."

Factory = Callable[..., AbstractAsyncContextManager[PlivoOutbounds]]


@pytest.fixture(name="start_plivo")
def plivo_factory(start_bridge: BridgeFactory) -> Factory:
    return start_plivo(start_bridge)


def _signed(url: str, form: dict[str, str], token: str, nonce: str) -> dict[str, str]:
    signature = sign(token, "POST", url, form, nonce)
    return {
        SIGNATURE_HEADER: signature,
        MAIN_ACCOUNT_SIGNATURE_HEADER: signature,
        NONCE_HEADER: nonce,
    }


async def test_a_person_answers_on_plivo(start_plivo: Factory) -> None:
    async with start_plivo({HUMAN: Callee("human", talk=0.8)}) as o:
        response = await o.call(to=HUMAN, persona="pv")
        assert response.status_code == 201, response.text
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "answered"
        (call,) = o.api.created
        assert ended.call_sid == call.uuid  # the request_uuid, which is the CallUUID
        body = call.body
        assert (body["from"], body["to"]) == (CALLER_ID[1:], HUMAN[1:])  # Plivo's digits
        assert body["answer_url"].startswith(PUBLIC_URL + "/twilio/outbound/plivo/answer?attempt=")
        assert body["machine_detection"] == "true"
        assert "/outbound/plivo/machine/hangup?attempt=" in body["machine_detection_url"]
        assert body["ring_timeout"] == 30
        assert call.report is not None
        assert call.report.upgrade_status == 101  # the stream path's token was accepted
        assert call.report.sample_rate == 16_000  # <Stream contentType> L16 at 16 kHz
        assert call.report.frames_received > 0  # the persona's audio reached the callee
        assert call.report.protocol_errors == []
        row = await o.row(call.uuid)
        assert row.end_reason == "caller_hangup"
        assert row.channel == "plivo"
        assert row.placed_by == "operator"
        assert (row.to_number, row.from_number) == (HUMAN, CALLER_ID)
        assert row.recording_path is not None
        assert row.sample_rate == 16_000
        kinds = [kind for kind, _, status in call.callbacks if status == 200]
        assert kinds == ["ring", "hangup"]
        await eventually(lambda: o.active_calls == 0)
        assert o.twilio.requests == []


async def test_dial_time_persona_answered_keeps_its_reservation(start_plivo: Factory) -> None:
    async with start_plivo({HUMAN: Callee("human", talk=0.6)}) as o:
        response = await o.call(to=HUMAN, persona="pvdial")
        assert response.status_code == 201, response.text
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "answered"
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.frames_received > 0
        assert (await o.row(call.uuid)).end_reason == "caller_hangup"


async def test_machine_gets_the_voicemail_after_plivos_beep_wait(start_plivo: Factory) -> None:
    async with start_plivo({MACHINE: Callee("machine", greeting=0.6)}) as o:
        response = await o.call(to=MACHINE, persona="pvreminder")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "voicemail"
        assert ended.answered_by == "Machine=true"
        (call,) = o.api.created
        assert "/outbound/plivo/machine/voicemail?attempt=" in call.body["machine_detection_url"]
        assert call.report is not None
        # The fallback is a REST transfer of the A leg to a document that waits for the
        # beep (Plivo has no beep verdict), then speaks the voicemail and hangs up.
        assert [r["action"] for r in call.report.rest_requests] == ["transfer"]
        assert call.report.said == [VOICEMAIL]
        assert call.report.twiml_verbs[-3:] == ["Wait", "Speak", "Hangup"]
        assert call.report.action_answer is not None
        assert 'beep="true"' in call.report.action_answer
        assert (await o.row(call.uuid)).end_reason == "voicemail"


async def test_machine_is_hung_up_on_for_a_hangup_persona(start_plivo: Factory) -> None:
    async with start_plivo({MACHINE: Callee("machine", greeting=3.0)}) as o:
        response = await o.call(to=MACHINE, persona="pv")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "machine_hangup"
        (call,) = o.api.created
        assert call.report is not None
        assert [r["action"] for r in call.report.rest_requests] == ["hangup"]
        assert call.report.said == []
        assert (await o.row(call.uuid)).end_reason == "machine_hangup"


async def test_opt_out_on_plivo_lands_on_dnc_and_ends_politely(start_plivo: Factory) -> None:
    async with start_plivo({HUMAN: Callee("human", talk=10.0, dtmf=((0.5, "9"),))}) as o:
        response = await o.call(to=HUMAN, persona="pvreminder")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "opted_out"
        assert await o.outbound.store.is_dnc(HUMAN)
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.said == ["You will not be called again. Goodbye from CitySan."]
        assert "Wait" not in call.report.twiml_verbs  # only a voicemail waits for a beep
        assert (await o.row(call.uuid)).end_reason == "opted_out"


async def test_a_refused_create_releases_the_claim(start_plivo: Factory) -> None:
    async with start_plivo() as o:
        o.api.refuse_create = 400
        response = await o.call(to=HUMAN, persona="pv")
        assert response.status_code == 502
        assert "Plivo" in response.json()["error"]
        (attempt,) = await o.outbound.store.attempts_for()
        assert attempt.outcome == "not_placed"
        assert o.active_calls == 0


async def test_plivo_callbacks_must_carry_plivos_signature(start_plivo: Factory) -> None:
    async with start_plivo({HUMAN: Callee("human", talk=0.3)}) as o:
        response = await o.call(to=HUMAN, persona="pv")
        attempt_id = response.json()["id"]
        ended = await o.ended(attempt_id)
        assert ended.outcome == "answered"
        path = f"/twilio/outbound/plivo/hangup?attempt={attempt_id}"
        url = PUBLIC_URL + path
        form = {"CallUUID": ended.call_sid, "CallStatus": "busy"}
        unsigned = await o.http.post(o.bridge.url + path, data=form)
        assert unsigned.status_code == 403
        forged = await o.http.post(
            o.bridge.url + path, data=form, headers=_signed(url, form, "not-the-token", "n1")
        )
        assert forged.status_code == 403
        # Signed for another URL (the inbound webhook): refused too.
        moved = await o.http.post(
            o.bridge.url + path,
            data=form,
            headers=_signed(PUBLIC_URL + "/plivo/voice", form, AUTH_TOKEN, "n2"),
        )
        assert moved.status_code == 403
        after = await o.outbound.store.attempt(attempt_id)
        assert after is not None
        assert after.outcome == "answered"
        signed = await o.http.post(
            o.bridge.url + path, data=form, headers=_signed(url, form, AUTH_TOKEN, "n3")
        )
        assert signed.status_code == 200  # settled already: accepted, nothing changes
        replayed = await o.http.post(
            o.bridge.url + path, data=form, headers=_signed(url, form, AUTH_TOKEN, "n3")
        )
        assert replayed.status_code == 403  # a nonce is accepted once
        again = await o.outbound.store.attempt(attempt_id)
        assert again is not None
        assert again.outcome == "answered"


async def test_a_plivo_claim_cut_by_a_crash_is_looked_up_never_redialled(
    start_plivo: Factory,
) -> None:
    """A dead process's claims: one whose create reached Plivo (found in the call detail
    records and adopted), one ringing right now (found among live calls), one that never
    reached Plivo (released). Nothing is dialled again."""
    ringing_to, lost_to = "+14165550123", "+14165550124"
    async with start_plivo({HUMAN: Callee("busy"), ringing_to: Callee("no-answer", ring=3.0)}) as o:
        store = o.outbound.store
        wall = datetime.now(UTC)

        # Dialled through Plivo by a persona bound to Twilio now (rebound since):
        # recovery follows the carrier the attempt recorded.
        ended, ringing, lost = [
            await claim(store, to, carrier="plivo", at=wall - timedelta(minutes=2))
            for to in (HUMAN, ringing_to, lost_to)
        ]
        dialer = PlivoDialer(AUTH_ID, AUTH_TOKEN, http=o.http, api_url=o.api.url)
        url = o.outbound.config.callback_url

        async def place(attempt: Attempt, to: str) -> None:
            # its callbacks were lost with it: only the answer URL is real
            await dialer.place(
                DialRequest(
                    attempt_id=attempt.id,
                    to=to,
                    from_=CALLER_ID,
                    callback_url=lambda kind: (
                        url(f"plivo/{kind}", attempt.id) if kind == "answer" else ""
                    ),
                    ring_seconds=30,
                    machine="hangup",
                    sample_rate=16000,
                )
            )

        await place(ended, HUMAN)
        await place(ringing, ringing_to)
        await eventually(lambda: o.api.calls and all(c.status != "queued" for c in o.api.created))
        await eventually(lambda: any(c.ended is not None for c in o.api.created))
        # The states below are the proof: the bridge's own campaign runner may
        # have reconciled some of these already, so the count of this pass is not.
        await o.outbound.reconcile()
        released = await store.attempt(lost.id)
        assert released is not None
        assert released.outcome == "not_placed"
        adopted = await store.attempt(ended.id)
        assert adopted is not None
        assert adopted.outcome == "busy"
        busy_call = next(c for c in o.api.created if c.to == HUMAN)
        assert adopted.call_sid == busy_call.uuid
        assert (await o.row(busy_call.uuid)).end_reason == "line_busy"
        live = await store.attempt(ringing.id)
        ringing_call = next(c for c in o.api.created if c.to == ringing_to)
        assert live is not None
        assert live.state == "dialing"
        assert live.call_sid == ringing_call.uuid  # adopted while it rings
        assert len(o.api.created) == 2  # nobody dialled again
        gets = [path for method, path in o.api.requests if method == "GET"]
        assert any(path.endswith("/Call/") for path in gets)  # the listings were read
        # Once it has rung out, the next pass settles it from its record.
        await o.api.wait_ended()
        # The states below are the proof: the bridge's own campaign runner may
        # have reconciled some of these already, so the count of this pass is not.
        await o.outbound.reconcile()
        settled = await store.attempt(ringing.id)
        assert settled is not None
        assert settled.outcome == "no_answer"
        assert o.twilio.requests == []


async def test_hang_up_cancels_a_ringing_call_and_a_gone_call_is_success(
    start_plivo: Factory,
) -> None:
    async with start_plivo({HUMAN: Callee("no-answer", ring=5.0)}) as o:
        dialer = PlivoDialer(AUTH_ID, AUTH_TOKEN, http=o.http, api_url=o.api.url)
        placed = await dialer.place(
            DialRequest(
                attempt_id="oa_" + "0" * 24,
                to=HUMAN,
                from_=CALLER_ID,
                callback_url=lambda kind: (
                    PUBLIC_URL + "/never-answered" if kind == "answer" else ""
                ),
                ring_seconds=30,
                machine="hangup",
                sample_rate=16000,
            )
        )
        await eventually(lambda: o.api.calls[placed.sid].status == "ringing")
        fetched = await dialer.fetch(placed.sid)
        assert fetched is not None
        assert fetched.status == "ringing"
        await dialer.hang_up(placed.sid)
        assert o.api.calls[placed.sid].status == "cancel"
        record = await dialer.fetch(placed.sid)
        assert record is not None
        assert record.status == "canceled"
        await dialer.hang_up(placed.sid)  # already gone: 404, success
        assert await dialer.fetch("00000000-0000-4000-8000-000000000000") is None
