"""Outbound calls through Vonage, end to end: the real bridge and its Vonage dialer pointed
at a fake Voice API on loopback (test double, simulators/vonage_api.py) whose callees are
the Vonage phone simulator (signed answer webhook, NCCO ``connect`` to our media socket,
the ``disconnected`` NCCO after it).

The same path as Twilio's (admission, guard, leases, recording, outcome rows), with
Vonage's differences: an RS256 application JWT on every API request, JSON events signed
with the signature secret (HS256 + payload_hash), asynchronous advanced machine detection
whose beep is a ``machine`` event with ``sub_state: beep_start``, and a call list that
filters by time only (recovery pages through it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from phonebridge.config import Settings, SettingsError
from phonebridge.local import PUBLIC_URL
from phonebridge.outbound.carrier import CarrierError, DialRequest
from phonebridge.simulators.twilio_api import Callee
from phonebridge.telephony.vonage.dialer import (
    MAX_PAGES,
    VonageDialer,
    answered_by,
    application_jwt,
    call_status,
    machine_verdict,
    private_key_problem,
)
from phonebridge.telephony.vonage.signature import sign

from ..conftest import BridgeFactory
from .carriers import CALLER_ID, HUMAN, VonageOutbounds, eventually, pem, start_vonage
from .carriers import VONAGE_API_KEY as API_KEY
from .carriers import VONAGE_APPLICATION as APPLICATION
from .carriers import VONAGE_SECRET as SECRET
from .conftest import claim

MACHINE = "+14165550122"
OTHER = "+14165550123"

Factory = Callable[..., AbstractAsyncContextManager[VonageOutbounds]]


@pytest.fixture(name="start_vonage")
def vonage_factory(start_bridge: BridgeFactory, key_pair: tuple[str, str]) -> Factory:
    return start_vonage(start_bridge, key_pair)


def _signed(body: bytes | None, secret: str = SECRET) -> dict[str, str]:
    token = sign(secret, time.time(), api_key=API_KEY, jti=f"j{time.monotonic_ns()}", body=body)
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}


# --------------------------------------------------------------------------- end to end


async def test_a_person_answers_on_vonage(start_vonage: Factory) -> None:
    async with start_vonage({HUMAN: Callee("human", talk=0.8)}) as o:
        response = await o.call(to=HUMAN, persona="vg")
        assert response.status_code == 201, response.text
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "answered"
        assert ended.answered_by == "human"  # the signed advanced machine detection event
        (call,) = o.api.created
        assert ended.call_sid == call.uuid  # Vonage's uuid, for its REST API
        assert (call.to, call.from_) == (HUMAN[1:], CALLER_ID[1:])  # no + for Vonage
        assert call.machine_detection == {"behavior": "continue", "mode": "default"}
        assert call.ringing_timer == 30
        assert call.answer_url.startswith(PUBLIC_URL + "/twilio/outbound/vonage/answer?attempt=")
        assert call.event_url.startswith(PUBLIC_URL + "/twilio/outbound/vonage/event?attempt=")
        # every event was accepted (signed with the secret and the body's hash)
        assert {code for _, _, code in call.events} == {204}
        assert [s for s, _, _ in call.events][:3] == ["started", "ringing", "answered"]
        assert call.report is not None
        assert call.report.upgrade_status == 101  # the socket's Vonage JWT was accepted
        assert call.report.sample_rate == 16_000  # the NCCO asked for audio/l16;rate=16000
        assert call.report.bytes_received > 0  # the persona's audio reached the callee
        assert call.report.bytes_sent > 0
        row = await o.row(call.uuid)
        assert row.end_reason == "caller_hangup"
        assert row.channel == "vonage"
        assert row.placed_by == "operator"
        assert (row.to_number, row.from_number) == (HUMAN, CALLER_ID)
        assert row.recording_path is not None
        await eventually(lambda: o.active_calls == 0)
        assert o.twilio.requests == []


async def test_machine_gets_the_voicemail_after_the_beep(start_vonage: Factory) -> None:
    async with start_vonage({MACHINE: Callee("machine", greeting=0.6)}) as o:
        response = await o.call(to=MACHINE, persona="vgreminder")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "voicemail"
        assert ended.answered_by == "machine:beep_start"
        (call,) = o.api.created
        assert call.machine_detection == {
            "behavior": "continue",
            "mode": "default",
            "beep_timeout": 45,
        }
        assert call.report is not None
        # said by the disconnected event's NCCO, once the beep had passed
        assert call.report.said == [
            "Hello, this is CitySan reminding you that pickup is on Tuesday."
        ]
        beep = next(i for i, (s, d, _) in enumerate(call.events) if d.get("sub_state"))
        assert [s for s, _, _ in call.events][beep - 1 : beep + 1] == ["machine", "machine"]
        assert (await o.row(call.uuid)).end_reason == "voicemail"
        assert call.updates == []  # no REST hang-up: the NCCO ran out


async def test_machine_is_hung_up_on_for_a_hang_up_persona(start_vonage: Factory) -> None:
    async with start_vonage({MACHINE: Callee("machine", greeting=3.0)}) as o:
        response = await o.call(to=MACHINE, persona="vg")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "machine_hangup"
        assert ended.answered_by == "machine"
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.said == []
        assert call.report.ended_by == "bridge"  # at the first machine verdict, not the beep
        assert not any(d.get("sub_state") for _, d, _ in call.events)
        assert (await o.row(call.uuid)).end_reason == "machine_hangup"


async def test_opt_out_on_vonage_lands_on_dnc_and_ends_politely(start_vonage: Factory) -> None:
    async with start_vonage({HUMAN: Callee("human", talk=10.0, dtmf=((0.5, "9"),))}) as o:
        response = await o.call(to=HUMAN, persona="vgreminder")
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "opted_out"
        assert await o.outbound.store.is_dnc(HUMAN)
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.said == ["You will not be called again. Goodbye from CitySan."]
        assert (await o.row(call.uuid)).end_reason == "opted_out"


async def test_dial_time_model_session_on_vonage(start_vonage: Factory) -> None:
    async with start_vonage({HUMAN: Callee("human", ring=0.5, talk=0.8)}) as o:
        response = await o.call(to=HUMAN, persona="vgdial")
        assert response.status_code == 201, response.text
        assert o.active_calls == 1  # the model session opened at dial time holds a lease
        ended = await o.ended(response.json()["id"])
        assert ended.outcome == "answered"
        (call,) = o.api.created
        assert call.report is not None
        assert call.report.first_agent_audio_after_start_s is not None
        assert (await o.row(call.uuid)).end_reason == "caller_hangup"
        await eventually(lambda: o.active_calls == 0)


async def test_a_refused_create_is_not_placed_and_leaves_nothing_ringing(
    start_vonage: Factory,
) -> None:
    async with start_vonage() as o:
        o.api.refuse_create = 400
        response = await o.call(to=HUMAN, persona="vg")
        assert response.status_code == 502
        assert "Vonage" in response.json()["error"]
        (attempt,) = await o.outbound.store.attempts_for()
        assert attempt.outcome == "not_placed"
        assert o.active_calls == 0


async def test_vonage_callbacks_must_be_signed_with_the_secret(start_vonage: Factory) -> None:
    async with start_vonage() as o:
        store = o.outbound.store
        attempt = await claim(
            store, HUMAN, carrier="vonage", at=datetime.now(UTC), replica="", persona="vg"
        )
        await store.set_dialing(
            attempt.id, "c0ffee00-0000-4000-8000-000000000001", datetime.now(UTC)
        )
        path = f"/twilio/outbound/vonage/event?attempt={attempt.id}"
        body = json.dumps(
            {"uuid": "c0ffee00-0000-4000-8000-000000000001", "status": "busy"}
        ).encode()
        unsigned = await o.http.post(
            o.bridge.url + path, content=body, headers={"content-type": "application/json"}
        )
        assert unsigned.status_code == 403
        forged = await o.http.post(
            o.bridge.url + path, content=body, headers=_signed(body, "not-the-secret")
        )
        assert forged.status_code == 403
        # signed for another body: the payload hash does not match
        tampered = await o.http.post(o.bridge.url + path, content=body, headers=_signed(b"{}"))
        assert tampered.status_code == 403
        answer = await o.http.get(
            o.bridge.url + f"/twilio/outbound/vonage/answer?attempt={attempt.id}&uuid=x&to=1"
        )
        assert answer.status_code == 403
        unchanged = await store.attempt(attempt.id)
        assert unchanged is not None
        assert unchanged.state == "dialing"
        signed = await o.http.post(o.bridge.url + path, content=body, headers=_signed(body))
        assert signed.status_code == 204
        settled = await store.attempt(attempt.id)
        assert settled is not None
        assert settled.outcome == "busy"
        # the same event under any replica's prefix (a dead replica's callbacks)
        again = await o.http.post(
            o.bridge.url + path.replace("/twilio/", "/twilio/r/gone/"),
            content=body,
            headers=_signed(body),
        )
        assert again.status_code == 204
        assert o.api.requests == []


async def test_a_vonage_claim_cut_by_a_crash_is_looked_up_never_redialled(
    start_vonage: Factory,
) -> None:
    """Recovery pages through Vonage's call list (no number filter, one call a page here)
    and matches the lost call by its numbers; the claim that never reached Vonage is
    released, nobody is rung again."""
    async with start_vonage(
        {HUMAN: Callee("busy"), OTHER: Callee("busy"), MACHINE: Callee("busy")}
    ) as o:
        o.api.page_limit = 1
        store = o.outbound.store
        wall = datetime.now(UTC)

        # persona citysan is bound to Twilio now: recovery follows the attempt's carrier
        lost, reached = [
            await claim(store, to, carrier="vonage", at=wall - timedelta(minutes=2))
            for to in (HUMAN, OTHER)
        ]
        url = o.outbound.config.callback_url
        async with httpx.AsyncClient(timeout=10) as http:
            dialer = o.dialer(http)
            for to, attempt_id in ((MACHINE, "oa_" + "f" * 24), (OTHER, reached.id)):
                # Another call first (on the list's first page), then the dead process's
                # request for `reached`, whose events were lost with it.
                await dialer.place(
                    DialRequest(
                        attempt_id=attempt_id,
                        to=to,
                        from_=CALLER_ID,
                        callback_url=lambda kind, a=attempt_id: (
                            url(f"vonage/{kind}", a) if kind == "answer" else PUBLIC_URL + "/gone"
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
        call = next(c for c in o.api.created if c.to == OTHER[1:])
        assert adopted.call_sid == call.uuid
        assert (await o.row(call.uuid)).end_reason == "line_busy"
        lists = [p for m, p in o.api.requests if m == "GET" and p == "/v1/calls"]
        assert len(lists) >= 2  # paged
        assert [c.to for c in o.api.created].count(HUMAN[1:]) == 0  # never redialled
        assert o.twilio.requests == []


# --------------------------------------------------------------------------- the dialer alone


def _list_page(calls: list[dict[str, Any]], index: int, following: int | None) -> dict[str, Any]:
    links: dict[str, Any] = {"self": {"href": f"/v1/calls?record_index={index}"}}
    if following is not None:
        links["next"] = {"href": f"/v1/calls?page_size=100&record_index={following}"}
    return {
        "count": 0,
        "page_size": 100,
        "record_index": index,
        "_links": links,
        "_embedded": {"calls": calls},
    }


def _record(number: str, status: str = "completed") -> dict[str, Any]:
    return {
        "uuid": f"u-{number}",
        "to": {"type": "phone", "number": number},
        "from": {"type": "phone", "number": CALLER_ID[1:]},
        "status": status,
    }


async def test_find_refuses_to_answer_for_a_window_it_cannot_list_whole(
    key_pair: tuple[str, str],
) -> None:
    seen: list[str] = []

    def endless(request: httpx.Request) -> httpx.Response:
        index = int(request.url.params.get("record_index", "0"))
        seen.append(request.url.params["date_start"])
        return httpx.Response(200, json=_list_page([_record("14165550999")], index, index + 100))

    async with httpx.AsyncClient(transport=httpx.MockTransport(endless)) as http:
        dialer = VonageDialer(APPLICATION, key_pair[0], http=http, api_url="http://vonage.test")
        with pytest.raises(CarrierError, match="not listed whole"):
            await dialer.find(
                attempt_id="oa_x",
                to=HUMAN,
                from_=CALLER_ID,
                since=datetime(2024, 4, 19, 1, 2, 3, tzinfo=UTC),
            )
    assert len(seen) == MAX_PAGES
    assert seen[0] == "2024-04-19T01:02:03Z"


async def test_dialer_reads_records_errors_and_gone_calls(key_pair: tuple[str, str]) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        claims = jwt.decode(
            request.headers["authorization"].removeprefix("Bearer "),
            options={"verify_signature": False},
        )
        assert claims["application_id"] == APPLICATION
        if request.method == "GET" and request.url.path == "/v1/calls":
            index = int(request.url.params.get("record_index", "0"))
            if index == 0:
                return httpx.Response(
                    200, json=_list_page([_record(HUMAN[1:]), _record("1999")], 0, 2)
                )
            return httpx.Response(200, json=_list_page([_record(HUMAN[1:], "busy")], 2, None))
        if request.url.path.endswith("/gone"):
            return httpx.Response(404, json={"title": "Not Found"})
        if request.method == "POST":
            return httpx.Response(401, json={"title": "Unauthorized", "detail": "Invalid token"})
        return httpx.Response(200, json=_record(HUMAN[1:], "ringing"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(api)) as http:
        dialer = VonageDialer(APPLICATION, key_pair[0], http=http, api_url="http://vonage.test")
        found = await dialer.find(
            attempt_id="oa_x", to=HUMAN, from_=CALLER_ID, since=datetime.now(UTC)
        )
        assert [(c.to, c.status) for c in found] == [(HUMAN, "completed"), (HUMAN, "busy")]
        assert await dialer.fetch("gone") is None
        fetched = await dialer.fetch("u")
        assert fetched is not None
        assert (fetched.status, fetched.from_) == ("ringing", CALLER_ID)
        await dialer.hang_up("gone")  # already gone: success
        with pytest.raises(CarrierError, match="Invalid token") as refused:
            await dialer.place(
                DialRequest(
                    attempt_id="oa_x",
                    to=HUMAN,
                    from_=CALLER_ID,
                    callback_url=lambda kind: f"https://b/{kind}",
                    ring_seconds=600,
                    machine="hangup",
                    sample_rate=16000,
                )
            )
        assert refused.value.definitely_not_placed


# --------------------------------------------------------------------------- words and keys


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("started", "queued"),
        ("ringing", "ringing"),
        ("answered", "in-progress"),
        ("completed", "completed"),
        ("busy", "busy"),
        ("rejected", "busy"),
        ("timeout", "no-answer"),
        ("unanswered", "no-answer"),
        ("failed", "failed"),
        ("cancelled", "canceled"),
        ("disconnected", None),
        ("record", None),
        ("", None),
    ],
)
def test_vonage_call_statuses_in_the_services_words(status: str, expected: str | None) -> None:
    assert call_status(status) == expected


@pytest.mark.parametrize(
    ("status", "sub_state", "verdict", "word"),
    [
        ("human", "", "human", "human"),
        ("machine", "", "machine", "machine"),
        ("machine", "beep_start", "message_end", "machine:beep_start"),
        ("machine", "beep_timeout", "message_end", "machine:beep_timeout"),
        ("machine", "something_new", "machine", "machine:something_new"),
        ("answered", "", "unknown", "answered"),
    ],
)
def test_vonage_machine_detection_in_the_services_words(
    status: str, sub_state: str, verdict: str, word: str
) -> None:
    assert machine_verdict(status, sub_state) == verdict
    assert answered_by(status, sub_state) == word


def test_application_jwt_is_rs256_with_vonages_claims(key_pair: tuple[str, str]) -> None:
    private, public = key_pair
    token = application_jwt(APPLICATION, private, time.time(), jti="j1")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, public, algorithms=["RS256"])
    assert claims["application_id"] == APPLICATION
    assert claims["jti"] == "j1"
    assert 0 < claims["exp"] - claims["iat"] <= 900
    stale = application_jwt(APPLICATION, private, time.time() - 3600, jti="j2")
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(stale, public, algorithms=["RS256"])


def test_private_key_problems_are_caught_at_start(key_pair: tuple[str, str]) -> None:
    assert private_key_problem(key_pair[0]) is None
    assert private_key_problem("not a key") is not None
    ec_key = pem(ec.generate_private_key(ec.SECP256R1()))
    assert "RSA" in (private_key_problem(ec_key) or "")
    env = {
        "PHONEBRIDGE_PUBLIC_URL": "https://bridge.example.com",
        "TWILIO_AUTH_TOKEN": "auth-token-secret",
        "VONAGE_SIGNATURE_SECRET": SECRET,
        "VONAGE_APPLICATION_ID": APPLICATION,
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env | {"VONAGE_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nx"})
    assert any(p.startswith("VONAGE_PRIVATE_KEY:") for p in caught.value.problems)
    outbound = {
        "PHONEBRIDGE_OUTBOUND_ENABLED": "1",
        "PHONEBRIDGE_OUTBOUND_COUNTRIES": "1",
        "PHONEBRIDGE_OUTBOUND_CALLER_IDS": CALLER_ID,
        "PHONEBRIDGE_OUTBOUND_CARRIER": "vonage",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env | outbound | {"VONAGE_APPLICATION_ID": ""})
    assert any("VONAGE_PRIVATE_KEY are not all set" in p for p in caught.value.problems)
    settings = Settings.from_env(env | outbound | {"VONAGE_PRIVATE_KEY": key_pair[0]})
    assert settings.outbound_carrier == "vonage"


async def test_a_machine_verdict_without_a_stream_hangs_up_over_rest(
    start_vonage: Factory,
) -> None:
    """No stream to end here (it never started): the bridge hangs up with ``PUT /v1/calls``."""
    async with start_vonage({HUMAN: Callee("no-answer", ring=5.0)}) as o:
        response = await o.call(to=HUMAN, persona="vg")
        attempt_id = response.json()["id"]
        (call,) = o.api.created
        body = json.dumps({"uuid": call.uuid, "status": "machine"}).encode()
        answer = await o.http.post(
            o.bridge.url + f"/twilio/outbound/vonage/event?attempt={attempt_id}",
            content=body,
            headers=_signed(body),
        )
        assert answer.status_code == 204
        assert call.updates == [{"action": "hangup"}]
        ended = await o.ended(attempt_id)
        assert ended.answered_by == "machine"
        assert call.status == "cancelled"
        assert (await o.row(call.uuid)).channel == "vonage"
