"""Answer when the model is ready: the webhook's TwiML waits for the handshake, within a bound.

The phone side here is plain signed HTTP (the voice webhook and Twilio's call
status callback); the PersonaPlex simulator records when it sent its
handshake. Assertions are on order (answer after handshake, socket closed
before the pending deadline), never on durations.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from ..conftest import BridgeFactory, record_of
from .test_call_path import SHAKSHUKA


def voice_form(call_sid: str) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+14165550123",
        "To": SHAKSHUKA,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


async def post(
    http: httpx.AsyncClient, bridge: LocalBridge, path: str, form: dict[str, str]
) -> httpx.Response:
    url = bridge.public_url + path
    return await http.post(
        bridge.url + path, data=form, headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, url, form)}
    )


def set_answer_within(personas_dir: Path, seconds: float) -> None:
    path = personas_dir / "shakshuka.yaml"
    path.write_text(path.read_text() + f"answer_within_seconds: {seconds}\n")


async def test_the_twiml_comes_only_after_the_models_handshake(
    start_bridge: BridgeFactory,
) -> None:
    slow_model = SimulatorOptions(reply="echo", conditioning_delay=1.0)
    async with start_bridge(simulators=slow_model, answer_within_seconds=5) as bridge:
        call_sid = "CA" + secrets.token_hex(16)
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await post(http, bridge, "/twilio/voice", voice_form(call_sid))
            answered_at = asyncio.get_running_loop().time()
            assert "<Connect" in answer.text
            [model] = bridge.self_hosted[0].connections
            assert model.handshake_at is not None
            assert model.handshake_at <= answered_at
            await post(
                http,
                bridge,
                "/twilio/call-status",
                {"CallSid": call_sid, "CallStatus": "completed"},
            )


async def test_at_the_bound_the_call_is_answered_anyway(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    set_answer_within(personas_dir, 0.2)
    stuck_model = SimulatorOptions(reply="echo", conditioning_delay=8.0)
    async with start_bridge(simulators=stuck_model, answer_within_seconds=5) as bridge:
        call_sid = "CA" + secrets.token_hex(16)
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await post(http, bridge, "/twilio/voice", voice_form(call_sid))
            assert "<Connect" in answer.text
            [model] = bridge.self_hosted[0].connections
            assert model.handshake_at is None  # the persona's bound (0.2 s) came first
            await post(
                http,
                bridge,
                "/twilio/call-status",
                {"CallSid": call_sid, "CallStatus": "completed"},
            )


async def test_a_caller_who_hangs_up_while_it_rings_closes_the_model_socket_at_once(
    start_bridge: BridgeFactory,
) -> None:
    slow_model = SimulatorOptions(reply="echo", conditioning_delay=8.0)
    # The pending deadline is 60 s: only the status callback can close the socket in time.
    async with start_bridge(
        simulators=slow_model, answer_within_seconds=9, pending_timeout=60
    ) as bridge:
        call_sid = "CA" + secrets.token_hex(16)
        async with httpx.AsyncClient(timeout=15) as http:
            webhook = asyncio.create_task(post(http, bridge, "/twilio/voice", voice_form(call_sid)))
            async with asyncio.timeout(5):
                await bridge.self_hosted[0].wait_for_connections(1)
            status = await post(
                http, bridge, "/twilio/call-status", {"CallSid": call_sid, "CallStatus": "canceled"}
            )
            assert status.status_code == 204
            async with asyncio.timeout(3):
                model = await bridge.self_hosted[0].wait_for_close(0)
                answer = await webhook  # the held webhook ends with the call
            assert model.handshake_at is None
            # The call was withdrawn: no stream could claim it, so none is offered.
            assert "<Hangup" in answer.text
            assert "<Connect" not in answer.text
        record = await record_of(bridge, call_sid)
    assert record.end_reason == "caller_hangup"
    assert "hung up before the stream" in (record.error or "")


async def test_a_status_callback_must_be_signed_and_ignores_live_statuses(
    start_bridge: BridgeFactory,
) -> None:
    async with start_bridge(answer_within_seconds=0) as bridge:
        call_sid = "CA" + secrets.token_hex(16)
        async with httpx.AsyncClient(timeout=10) as http:
            await post(http, bridge, "/twilio/voice", voice_form(call_sid))
            forged = await http.post(
                bridge.url + "/twilio/call-status",
                data={"CallSid": call_sid, "CallStatus": "completed"},
            )
            ringing = await post(
                http, bridge, "/twilio/call-status", {"CallSid": call_sid, "CallStatus": "ringing"}
            )
            assert (forged.status_code, ringing.status_code) == (403, 204)
            await asyncio.sleep(0.2)
            [model] = bridge.self_hosted[0].connections
            assert model.closed_at is None  # still pending: neither request ended it
            await post(
                http,
                bridge,
                "/twilio/call-status",
                {"CallSid": call_sid, "CallStatus": "completed"},
            )
            async with asyncio.timeout(3):
                await bridge.self_hosted[0].wait_for_close(0)
