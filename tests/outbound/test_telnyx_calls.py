"""Outbound calls through Telnyx Call Control, end to end: the real bridge and its
TelnyxDialer pointed at a fake dial API on loopback (test double,
simulators/telnyx_api.py) whose answered calls are the Telnyx phone simulator.

The same path as Twilio's (admission, guard, leases, recording, outcome rows), with
Telnyx's differences: JSON dial with ``client_state``/``command_id``, every event
Ed25519-signed to the dial's ``webhook_url``, no document (the stream is a
``streaming_start`` command on ``call.answered``), outcomes from ``hangup_cause``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from phonebridge.config import Settings, SettingsError
from phonebridge.local import PUBLIC_URL
from phonebridge.outbound.carrier import DialRequest
from phonebridge.simulators.twilio_api import Callee
from phonebridge.telephony.telnyx.dialer import TelnyxDialer, call_status, machine_verdict
from phonebridge.telephony.telnyx.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    public_key_text,
    sign,
)

from ..conftest import BridgeFactory
from .carriers import CALLER_ID, HUMAN, TelnyxOutbounds, eventually, start_telnyx
from .carriers import TELNYX_API_KEY as API_KEY
from .carriers import TELNYX_CONNECTION as CONNECTION
from .carriers import TELNYX_KEY as KEY
from .conftest import claim

MACHINE = "+14165550122"
BASE = {"PHONEBRIDGE_PUBLIC_URL": "https://x.example", "TWILIO_AUTH_TOKEN": "t"}

Factory = Callable[..., AbstractAsyncContextManager[TelnyxOutbounds]]


@pytest.fixture(name="start_telnyx")
def telnyx_factory(start_bridge: BridgeFactory) -> Factory:
    return start_telnyx(start_bridge)


# -- the carrier's words ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "answered", "status"),
    [
        ("normal_clearing", True, "completed"),
        ("time_limit", True, "completed"),
        ("unspecified", True, "completed"),
        ("timeout", False, "no-answer"),
        ("no_answer", False, "no-answer"),
        ("user_busy", False, "busy"),
        ("call_rejected", False, "failed"),
        ("not_found", False, "failed"),
        ("unspecified", False, "failed"),
        ("originator_cancel", False, "canceled"),
        ("something_new", False, "failed"),
    ],
)
def test_hangup_causes_become_call_statuses(cause: str, answered: bool, status: str) -> None:
    assert call_status(cause, answered=answered) == status


@pytest.mark.parametrize(
    ("event", "result", "verdict"),
    [
        ("call.machine.detection.ended", "human", "human"),
        ("call.machine.detection.ended", "machine", "machine"),
        ("call.machine.detection.ended", "not_sure", "unknown"),
        ("call.machine.greeting.ended", "beep_detected", "message_end"),
        ("call.machine.greeting.ended", "ended", "message_end"),
        ("call.machine.greeting.ended", "not_sure", "unknown"),
        ("call.machine.premium.detection.ended", "machine", "unknown"),
    ],
)
def test_machine_results_become_verdicts(event: str, result: str, verdict: str) -> None:
    assert machine_verdict(event, result) == verdict


# -- calls ----------------------------------------------------------------------------


async def test_a_person_answers_on_telnyx(start_telnyx: Factory) -> None:
    async with start_telnyx({HUMAN: Callee("human", talk=0.8)}) as o:
        response = await o.call(to=HUMAN, persona="tx")
        assert response.status_code == 201, response.text
        attempt_id = response.json()["id"]
        ended = await o.ended(attempt_id)
        assert ended.outcome == "answered"
        assert ended.answered_by == "human"  # call.machine.detection.ended, signed
        (call,) = o.api.created
        assert ended.call_sid == call.call_control_id  # Telnyx's id, for its REST API
        assert call.amd == "detect"
        assert call.timeout == 30
        assert call.command_id == attempt_id
        assert base64.b64decode(call.client_state or "").decode() == attempt_id
        assert call.webhook_url == (
            PUBLIC_URL + f"/twilio/outbound/telnyx/events?attempt={attempt_id}"
        )
        assert call.events[0] == ("call.initiated", 200)
        # No document and no answer command: the stream is started on call.answered.
        assert o.actions(call.call_control_id)[0] == "streaming_start"
        assert "answer" not in o.actions(call.call_control_id)
        assert call.report is not None
        assert call.report.upgrade_status == 101  # the stream_auth_token was accepted
        assert call.report.sample_rate == 16_000
        assert call.report.frames_received > 0  # the persona was heard
        assert call.report.frames_sent > 0
        row = await o.row(call.call_control_id)
        assert row.end_reason == "caller_hangup"
        assert row.channel == "telnyx"
        assert row.placed_by == "operator"
        assert (row.to_number, row.from_number) == (HUMAN, CALLER_ID)
        assert row.recording_path is not None
        await eventually(lambda: o.active_calls == 0)
        assert o.twilio.requests == []


async def test_machine_gets_the_voicemail_after_the_beep(start_telnyx: Factory) -> None:
    async with start_telnyx({MACHINE: Callee("machine", greeting=0.6)}) as o:
        response = await o.call(to=MACHINE, persona="txreminder")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "voicemail"
        assert ended.answered_by == "beep_detected"
        (call,) = o.api.created
        assert call.amd == "detect_beep"
        assert call.report is not None
        assert call.report.said == [
            "Hello, this is CitySan reminding you that pickup is on Tuesday."
        ]
        # speak, then (on call.speak.ended, at our events URL) the hang-up
        assert o.actions(call.call_control_id)[-2:] == ["speak", "hangup"]
        assert (await o.row(call.call_control_id)).end_reason == "voicemail"


async def test_machine_is_hung_up_on_for_a_hang_up_persona(start_telnyx: Factory) -> None:
    async with start_telnyx({MACHINE: Callee("machine", greeting=3.0)}) as o:
        response = await o.call(to=MACHINE, persona="tx")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "machine_hangup"
        assert ended.answered_by == "machine"
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.said == []
        assert "hangup" in o.actions(call.call_control_id)
        assert (await o.row(call.call_control_id)).end_reason == "machine_hangup"


async def test_opt_out_on_telnyx_lands_on_dnc_and_ends_politely(start_telnyx: Factory) -> None:
    async with start_telnyx({HUMAN: Callee("human", talk=10.0, dtmf=((0.5, "9"),))}) as o:
        response = await o.call(to=HUMAN, persona="txreminder")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "opted_out"
        assert await o.outbound.store.is_dnc(HUMAN)
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.said == ["You will not be called again. Goodbye from CitySan."]
        assert (await o.row(call.call_control_id)).end_reason == "opted_out"


async def test_a_refused_dial_is_not_placed(start_telnyx: Factory) -> None:
    async with start_telnyx() as o:
        o.api.refuse_create = 422
        response = await o.call(to=HUMAN, persona="tx")
        assert response.status_code == 502
        (attempt,) = await o.outbound.store.attempts_for()
        assert attempt.outcome == "not_placed"
        assert o.api.created == []


def _event(attempt_id: str, event_type: str, **extra: Any) -> bytes:
    return json.dumps(
        {
            "data": {
                "record_type": "event",
                "event_type": event_type,
                "id": "e1",
                "payload": {
                    "call_control_id": "v3:forged",
                    "client_state": base64.b64encode(attempt_id.encode()).decode(),
                    **extra,
                },
            }
        }
    ).encode()


async def test_telnyx_events_must_be_signed_and_name_their_attempt(
    start_telnyx: Factory,
) -> None:
    async with start_telnyx() as o:
        store = o.outbound.store
        attempt = await claim(
            store, HUMAN, carrier="telnyx", at=datetime.now(UTC), replica="", persona="tx"
        )
        path = f"/twilio/outbound/telnyx/events?attempt={attempt.id}"
        body = _event(attempt.id, "call.hangup", hangup_cause="user_busy")
        stamp = str(int(time.time()))

        async def post(headers: dict[str, str], url_path: str = path) -> int:
            response = await o.http.post(o.bridge.url + url_path, content=body, headers=headers)
            return response.status_code

        assert await post({}) == 403
        other = Ed25519PrivateKey.generate()
        forged = {SIGNATURE_HEADER: sign(other, body, stamp), TIMESTAMP_HEADER: stamp}
        assert await post(forged) == 403
        stale = str(int(time.time()) - 3600)
        old = {SIGNATURE_HEADER: sign(KEY, body, stale), TIMESTAMP_HEADER: stale}
        assert await post(old) == 403
        signed = {SIGNATURE_HEADER: sign(KEY, body, stamp), TIMESTAMP_HEADER: stamp}
        # The URL is not signed: a query naming another attempt than the signed
        # client_state is refused.
        elsewhere = "/twilio/outbound/telnyx/events?attempt=oa_" + "1" * 24
        assert await post(signed, elsewhere) == 403
        unchanged = await store.attempt(attempt.id)
        assert unchanged is not None
        assert unchanged.state == "claimed"
        # The genuine event is taken (on a replica's path too) and settles the attempt.
        assert (
            await post(signed, f"/twilio/r/gone/outbound/telnyx/events?attempt={attempt.id}") == 200
        )
        settled = await store.attempt(attempt.id)
        assert settled is not None
        assert settled.outcome == "busy"


async def test_a_telnyx_claim_cut_by_a_crash_is_found_by_its_client_state(
    start_telnyx: Factory,
) -> None:
    """Recovery without a list by to/from: the connection's active calls and the call
    events, both matched on the client_state; another attempt's call to the same
    number is not adopted, and a claim that never reached Telnyx is released."""
    ringing_to = "+14165550123"
    callees = {HUMAN: Callee("busy"), ringing_to: Callee("no-answer", ring=30.0)}
    async with start_telnyx(callees) as o:
        store = o.outbound.store
        wall = datetime.now(UTC)

        lost, reached, ringing = [
            await claim(store, to, carrier="telnyx", at=wall - timedelta(minutes=2), persona="tx")
            for to in (HUMAN, HUMAN, ringing_to)
        ]
        dialer = TelnyxDialer(o.http, api_url=o.api.url, api_key=API_KEY, connection_id=CONNECTION)
        for attempt in (reached, ringing):
            await dialer.place(
                DialRequest(
                    attempt_id=attempt.id,
                    to=attempt.to_number,
                    from_=CALLER_ID,
                    # the dead process's events were lost with it
                    callback_url=lambda kind: PUBLIC_URL + "/lost",
                    ring_seconds=30,
                    machine="hangup",
                    sample_rate=16000,
                )
            )
        busy_call, ringing_call = o.api.created
        await eventually(lambda: busy_call.ended is not None)
        # The states below are the proof: the bridge's own campaign runner may
        # have reconciled some of these already, so the count of this pass is not.
        await o.outbound.reconcile()
        released = await store.attempt(lost.id)
        assert released is not None
        assert released.outcome == "not_placed"  # the busy call is reached's, not lost's
        adopted = await store.attempt(reached.id)
        assert adopted is not None
        assert adopted.outcome == "busy"
        assert adopted.call_sid == busy_call.call_control_id
        assert (await o.row(busy_call.call_control_id)).end_reason == "line_busy"
        live = await store.attempt(ringing.id)
        assert live is not None
        assert live.call_sid == ringing_call.call_control_id  # found among the active calls
        assert live.state != "ended"
        assert ("GET", f"/v2/connections/{CONNECTION}/active_calls") in o.api.requests
        assert ("GET", "/v2/call_events") in o.api.requests
        assert o.twilio.requests == []


def test_telnyx_as_the_outbound_carrier_needs_its_connection_id() -> None:
    fenced = {
        **BASE,
        "PHONEBRIDGE_OUTBOUND_ENABLED": "1",
        "PHONEBRIDGE_OUTBOUND_COUNTRIES": "1",
        "PHONEBRIDGE_OUTBOUND_CALLER_IDS": "+14165550100",
        "PHONEBRIDGE_OUTBOUND_CARRIER": "telnyx",
        "TELNYX_PUBLIC_KEY": public_key_text(KEY),
        "TELNYX_API_KEY": API_KEY,
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(fenced)
    problems = "\n".join(caught.value.problems)
    assert "TELNYX_CONNECTION_ID are not all set" in problems
    assert "TWILIO_ACCOUNT_SID" not in problems  # Twilio's are not needed then
    settings = Settings.from_env({**fenced, "TELNYX_CONNECTION_ID": CONNECTION})
    assert settings.outbound_carrier == "telnyx"
    assert settings.carriers.telnyx_connection_id == CONNECTION


async def test_the_dialer_fetches_and_hangs_up_through_call_control(start_telnyx: Factory) -> None:
    async with start_telnyx({HUMAN: Callee("no-answer", ring=30.0)}) as o:
        dialer = TelnyxDialer(o.http, api_url=o.api.url, api_key=API_KEY, connection_id=CONNECTION)
        placed = await dialer.place(
            DialRequest(
                attempt_id="oa_" + "2" * 24,
                to=HUMAN,
                from_=CALLER_ID,
                callback_url=lambda kind: PUBLIC_URL + "/lost",
                ring_seconds=2,  # below Telnyx's minimum: asked as 5
                machine="voicemail",
                sample_rate=16000,
            )
        )
        (call,) = o.api.created
        assert (call.timeout, call.amd) == (5, "detect_beep")
        live = await dialer.fetch(placed.sid)
        assert live is not None
        assert live.status == "in-progress"
        await dialer.hang_up(placed.sid)  # while it rings: Telnyx cancels it
        await eventually(lambda: call.ended is not None)
        gone = await dialer.fetch(placed.sid)
        assert gone is not None
        assert gone.status == "canceled"  # the cause, from its call.hangup call event
        await dialer.hang_up(placed.sid)  # already over: still success
        assert await dialer.fetch("v3:unknown") is None
