"""Outbound calls through SignalWire, end to end: the real bridge and ``twilio`` client
pointed at a SignalWire space, a fake Compatibility (LaML) Calls API on loopback (test
double, simulators/signalwire_api.py) whose callees are the SignalWire phone simulator.

The same path as Twilio's (admission, guard, leases, recording, outcome rows), with
SignalWire's differences: UUID call ids (our SID is derived from them), callbacks
signed with the Signing Key, a cXML answer and SignalWire's media socket.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import pytest

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.outbound.carrier import DialRequest
from phonebridge.simulators.twilio_api import Callee
from phonebridge.telephony.signalwire.dialer import SignalWireDialer
from phonebridge.telephony.signalwire.signature import SIGNATURE_HEADER, sign_form
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER as TWILIO_SIGNATURE
from phonebridge.telephony.twilio.signature import sign

from ..conftest import BridgeFactory
from .carriers import CALLER_ID, HUMAN, SignalWireOutbounds, eventually, start_signalwire
from .carriers import SIGNALWIRE_API_TOKEN as API_TOKEN
from .carriers import SIGNALWIRE_PROJECT as PROJECT
from .carriers import SIGNALWIRE_SIGNING_KEY as SIGNING_KEY
from .conftest import claim

MACHINE = "+14165550122"

Factory = Callable[..., AbstractAsyncContextManager[SignalWireOutbounds]]


@pytest.fixture(name="start_signalwire")
def signalwire_factory(start_bridge: BridgeFactory) -> Factory:
    return start_signalwire(start_bridge)


async def test_a_person_answers_on_signalwire(start_signalwire: Factory) -> None:
    async with start_signalwire({HUMAN: Callee("human", talk=0.8)}) as o:
        response = await o.call(to=HUMAN, persona="sw")
        assert response.status_code == 201, response.text
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "answered"
        assert ended.answered_by == "human"  # the async AMD callback, signed with the key
        (call,) = o.api.created
        assert ended.call_sid == call.sid  # SignalWire's id, for its REST API
        assert call.machine_detection == "Enable"
        assert call.url.startswith(PUBLIC_URL + "/twilio/outbound/signalwire/answer?attempt=")
        assert call.report is not None
        assert call.report.upgrade_status == 101  # the bearer token was accepted
        assert call.report.stream_url is not None
        assert "?" not in call.report.stream_url
        assert call.report.sample_rate == 16_000  # cXML asked for L16@16000h
        assert call.report.frames_received > 0
        row = await o.row(call.sid)
        assert row.end_reason == "caller_hangup"
        assert row.channel == "signalwire"
        assert row.placed_by == "operator"
        assert (row.to_number, row.from_number) == (HUMAN, CALLER_ID)
        assert row.recording_path is not None
        await eventually(lambda: o.active_calls == 0)
        assert o.twilio.requests == []


async def test_machine_gets_the_voicemail_through_the_connect_action(
    start_signalwire: Factory,
) -> None:
    async with start_signalwire({MACHINE: Callee("machine", greeting=0.6)}) as o:
        response = await o.call(to=MACHINE, persona="swreminder")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "voicemail"
        assert ended.answered_by == "machine_end_beep"
        (call,) = o.api.created
        assert call.machine_detection == "DetectMessageEnd"
        assert call.report is not None
        assert call.report.said == [
            "Hello, this is CitySan reminding you that pickup is on Tuesday."
        ]
        assert (await o.row(call.sid)).end_reason == "voicemail"


async def test_disabled_means_403_and_no_signalwire_request(start_signalwire: Factory) -> None:
    async with start_signalwire(outbound_enabled=False) as o:
        response = await o.call(to=HUMAN, persona="sw")
        assert response.status_code == 403
        assert "disabled" in response.json()["error"]
        assert o.api.requests == []
        assert o.twilio.requests == []
        assert await o.outbound.store.attempts_for() == []


async def test_a_carrier_that_cannot_dial_out_is_refused_before_anything(
    start_signalwire: Factory,
) -> None:
    async with start_signalwire() as o:
        response = await o.call(to=HUMAN, persona="telnyxonly")
        assert response.status_code == 503
        assert "telnyx" in response.json()["error"]
        assert o.api.requests == []
        assert o.twilio.requests == []
        assert await o.outbound.store.attempts_for() == []


async def test_signalwire_callbacks_must_carry_the_signing_keys_signature(
    start_signalwire: Factory,
) -> None:
    async with start_signalwire() as o:
        path = "/twilio/outbound/signalwire/status?attempt=oa_" + "0" * 24
        url = PUBLIC_URL + path
        form = {"CallSid": PROJECT, "CallStatus": "completed"}
        unsigned = await o.http.post(o.bridge.url + path, data=form)
        assert unsigned.status_code == 403
        # Twilio's signature (its auth token) is not SignalWire's
        twilio_signed = await o.http.post(
            o.bridge.url + path,
            data=form,
            headers={TWILIO_SIGNATURE: sign(DEMO_AUTH_TOKEN, url, form)},
        )
        assert twilio_signed.status_code == 403
        signed = await o.http.post(
            o.bridge.url + path,
            data=form,
            headers={SIGNATURE_HEADER: sign_form(SIGNING_KEY, url, form)},
        )
        assert signed.status_code == 204  # an unknown attempt: accepted, nothing to settle


async def test_a_signalwire_claim_cut_by_a_crash_is_looked_up_never_redialled(
    start_signalwire: Factory,
) -> None:
    """Recovery lists and fetches calls through SignalWire's Compatibility API too, for
    the attempt's own carrier whatever its persona is bound to now."""
    other = "+14165550123"
    async with start_signalwire({HUMAN: Callee("busy"), other: Callee("busy")}) as o:
        store = o.outbound.store
        wall = datetime.now(UTC)

        # Dialled through SignalWire by a persona bound to Twilio now (rebound since):
        # recovery follows the carrier the attempt recorded.
        lost, reached = [
            await claim(store, to, carrier="signalwire", at=wall - timedelta(minutes=2))
            for to in (HUMAN, other)
        ]
        # The dead process's request for `reached` got to SignalWire; `lost`'s never did.
        dialer = SignalWireDialer(PROJECT, API_TOKEN, space_url=o.api.url)
        url = o.outbound.config.callback_url
        await dialer.place(
            DialRequest(
                attempt_id=reached.id,
                to=other,
                from_=CALLER_ID,
                # its status callbacks were lost with it: only the answer URL is real
                callback_url=lambda kind: (
                    url(f"signalwire/{kind}", reached.id) if kind == "answer" else ""
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
        released = await store.attempt(lost.id)
        assert released is not None
        assert released.outcome == "not_placed"
        adopted = await store.attempt(reached.id)
        assert adopted is not None
        assert adopted.outcome == "busy"
        (call,) = o.api.created
        assert adopted.call_sid == call.sid
        assert (await o.row(call.sid)).end_reason == "line_busy"
        assert any(
            path.endswith("/Calls.json") for method, path in o.api.requests if method == "GET"
        )
        assert o.twilio.requests == []


async def test_opt_out_on_signalwire_lands_on_dnc_and_ends_politely(
    start_signalwire: Factory,
) -> None:
    async with start_signalwire({HUMAN: Callee("human", talk=10.0, dtmf=((0.5, "9"),))}) as o:
        response = await o.call(to=HUMAN, persona="swreminder")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "opted_out"
        assert await o.outbound.store.is_dnc(HUMAN)
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.said == ["You will not be called again. Goodbye from CitySan."]
        assert (await o.row(call.sid)).end_reason == "opted_out"
