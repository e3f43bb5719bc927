"""The call path end to end: phone simulator -> real bridge -> PersonaPlex simulator.

Everything runs over real sockets on loopback. Assertions are on behaviour and
ordering; the generous time bounds only keep a broken build from hanging.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge, SimulatorOptions
from phonebridge.personas.loader import load_personas
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from .conftest import BridgeFactory, record_of, tone_mulaw

CITYSAN = "+14165550101"  # personaplex, overflow polargrid
SHAKSHUKA = "+14165550102"  # personaplex, no overflow
UNLISTED = "+14165559999"  # nobody's: the default persona (casual)


async def call(bridge: LocalBridge, to: str, **options: object) -> DialReport:
    options.setdefault("audio", tone_mulaw(1.0))
    options.setdefault("tail", 0.5)
    async with asyncio.timeout(30):
        return await dial(
            bridge.url,
            to=to,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            **options,  # type: ignore[arg-type]
        )


def read_json(path: str | None) -> dict[str, Any]:
    assert path is not None
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


async def test_a_call_is_answered_by_its_persona_and_hears_the_model(
    bridge: LocalBridge,
) -> None:
    report = await call(bridge, CITYSAN)
    assert report.ok, report.protocol_errors
    # The TwiML: <Connect action><Stream url wss, no query><Parameter>s, nothing after.
    document = ET.fromstring(report.twiml_answers[0])
    assert [child.tag for child in document] == ["Connect"]
    connect_verb = document[0]
    assert connect_verb.get("action") == bridge.public_url + "/twilio/stream-ended"
    stream = connect_verb.find("Stream")
    assert stream is not None
    assert stream.get("url") == "wss://bridge.phonebridge.invalid/twilio/media"
    params = report.custom_parameters
    assert params["persona"] == "citysan"
    assert params["to"] == CITYSAN
    assert params["call_sid"] == report.call_sid
    assert len(params["token"]) >= 16
    # The echo simulator returned the caller's tone: the caller heard the model.
    assert report.frames_received > 0
    record = await record_of(bridge, report.call_sid)
    assert record.persona == "citysan"
    assert record.provider == "personaplex"
    assert record.end_reason == "caller_hangup"
    assert record.ended_by == "caller"
    assert record.model_ready_at is not None
    assert (record.model_socket_seconds or 0) > 0
    # The simulator saw the persona's prompt and voice, as the server wants them.
    query = bridge.self_hosted[0].connections[0].query
    assert query["voice_prompt"] == ["NATF1.pt"]
    assert "Ayelen" in query["text_prompt"][0]
    assert "seed" not in query


async def test_unlisted_number_reaches_the_default_persona(bridge: LocalBridge) -> None:
    report = await call(bridge, UNLISTED)
    assert report.custom_parameters["persona"] == "casual"


async def test_forged_webhook_signature_is_rejected(bridge: LocalBridge) -> None:
    form = {"CallSid": "CA" + "0" * 32, "To": CITYSAN, "From": "+15005550006"}
    url = bridge.public_url + "/twilio/voice"
    async with httpx.AsyncClient() as http:
        forged = await http.post(
            bridge.url + "/twilio/voice",
            data=form,
            headers={SIGNATURE_HEADER: sign("not-the-token", url, form)},
        )
        missing = await http.post(bridge.url + "/twilio/voice", data=form)
        # Signed for other parameters: a replay with the number changed.
        replay = await http.post(
            bridge.url + "/twilio/voice",
            data={**form, "To": SHAKSHUKA},
            headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, url, form)},
        )
    assert (forged.status_code, missing.status_code, replay.status_code) == (403, 403, 403)
    assert bridge.self_hosted[0].connections == []  # no model session was opened


async def test_unsigned_media_socket_is_refused_before_any_model_session(
    bridge: LocalBridge,
) -> None:
    ws_url = bridge.url.replace("http://", "ws://") + "/twilio/media"
    for headers in ({}, {SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403
    assert bridge.self_hosted[0].connections == []


async def test_signed_socket_with_a_wrong_token_opens_nothing(bridge: LocalBridge) -> None:
    ws_url = bridge.url.replace("http://", "ws://") + "/twilio/media"
    signature = sign(DEMO_AUTH_TOKEN, "wss://bridge.phonebridge.invalid/twilio/media", {})
    async with connect(ws_url, additional_headers={SIGNATURE_HEADER: signature}) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": "MZ" + "1" * 32,
                    "start": {
                        "streamSid": "MZ" + "1" * 32,
                        "accountSid": "AC" + "1" * 32,
                        "callSid": "CA" + "1" * 32,
                        "tracks": ["inbound"],
                        "customParameters": {"token": "guessed"},
                        "mediaFormat": {
                            "encoding": "audio/x-mulaw",
                            "sampleRate": 8000,
                            "channels": 1,
                        },
                    },
                }
            )
        )
        async with asyncio.timeout(5):
            await ws.wait_closed()
    assert ws.close_code == 1008
    assert bridge.self_hosted[0].connections == []


async def test_silence_gap_is_filled_so_the_model_never_starves(bridge: LocalBridge) -> None:
    # Two seconds in which Twilio sends no media at all (§1.2).
    report = await call(bridge, CITYSAN, audio=tone_mulaw(3.0), gaps=[(0.5, 2.0)])
    assert report.ok
    record = bridge.self_hosted[0].connections[0]
    # Input kept flowing every 20 ms through the gap (a loaded CI box may be late,
    # but nowhere near the two seconds the phone was silent).
    assert record.max_input_gap < 0.5
    assert record.input_samples >= 24_000 * 2.5


async def test_dtmf_reaches_the_transcript(bridge: LocalBridge) -> None:
    report = await call(bridge, CITYSAN, dtmf=[(0.3, "42#")])
    record = await record_of(bridge, report.call_sid)
    transcript = read_json(record.transcript_path)
    digits = [event["detail"] for event in transcript["events"] if event["kind"] == "dtmf"]
    assert "".join(digits) == "42#"


async def test_hang_up_closes_the_model_socket_at_once(bridge: LocalBridge) -> None:
    loop = asyncio.get_running_loop()
    report = await call(bridge, CITYSAN, hangup_after=1.0)
    hung_up = loop.time()
    assert report.ended_by == "caller"
    async with asyncio.timeout(5):
        model = await bridge.self_hosted[0].wait_for_close(0)
    assert model.closed_at is not None
    # Closed by the time the phone's own close handshake finished, or just after:
    # nowhere near the pending timeout or a socket timeout.
    assert model.closed_at - hung_up < 0.5
    assert bridge.app.state.deps.bridge.admission.active_calls == 0


async def test_busy_when_the_only_server_is_taken_and_no_overflow(
    bridge: LocalBridge,
) -> None:
    first = asyncio.create_task(call(bridge, SHAKSHUKA, audio=tone_mulaw(2.0)))
    await asyncio.sleep(0.5)
    second = await call(bridge, SHAKSHUKA)
    assert second.twiml_verbs[:2] == ["Say", "Hangup"]
    assert "busy" in second.said[0].lower()
    assert (await first).frames_received > 0
    record = await record_of(bridge, second.call_sid)
    assert record.end_reason == "busy"
    assert len(bridge.self_hosted[0].connections) == 1  # never queued on a busy server


async def test_overflow_goes_to_the_hosted_provider(bridge: LocalBridge) -> None:
    first = asyncio.create_task(call(bridge, SHAKSHUKA, audio=tone_mulaw(2.0)))
    await asyncio.sleep(0.5)
    second = await call(bridge, CITYSAN)  # citysan overflows to PolarGrid
    await first
    assert second.frames_received > 0
    record = await record_of(bridge, second.call_sid)
    assert record.provider == "polargrid"
    pg = bridge.polargrid.connections[0]
    assert pg.subprotocols == ("bearer.pg_simulator_key",)
    transcript = read_json(record.transcript_path)
    assert "overflow" in [event["kind"] for event in transcript["events"]]


async def test_model_dying_mid_call_plays_the_fallback(start_bridge: BridgeFactory) -> None:
    options = SimulatorOptions(reply="echo", conditioning_delay=0.05, extra={"die_after": 0.5})
    async with start_bridge(simulators=options) as bridge:
        report = await call(bridge, SHAKSHUKA, audio=tone_mulaw(3.0))
        assert report.ended_by == "bridge"
        # Twilio asked the <Connect action> URL and got the persona's apology.
        assert report.action_status == 200
        shakshuka = load_personas(bridge.settings.personas_dir).by_id("shakshuka")
        assert shakshuka is not None
        assert report.said[-1] == shakshuka.fallback.say
        record = await record_of(bridge, report.call_sid)
        assert record.end_reason == "model_ended"
        assert record.ended_by == "model"
        assert bridge.app.state.deps.bridge.admission.active_calls == 0


async def test_persona_edits_are_picked_up_and_broken_ones_rejected(
    bridge: LocalBridge, personas_dir: Path
) -> None:
    new_number = "+14165550177"
    text = (personas_dir / "teacher.yaml").read_text()
    (personas_dir / "teacher.yaml").write_text(text.replace("+14165550104", new_number))
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.2)
    report = await call(bridge, new_number, hangup_after=0.3)
    assert report.custom_parameters["persona"] == "teacher"
    # A broken edit: unknown voice. The previous personas stay in force.
    (personas_dir / "teacher.yaml").write_text(
        text.replace("+14165550104", new_number).replace("voice: NATF2", "voice: NOPE")
    )
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.2)
    again = await call(bridge, new_number, hangup_after=0.3)
    assert again.custom_parameters["persona"] == "teacher"


async def test_webhook_without_stream_releases_the_model_after_the_deadline(
    start_bridge: BridgeFactory,
) -> None:
    """The caller hung up while it rang: the opened model socket must not leak."""
    async with start_bridge(pending_timeout=0.5) as bridge:
        form = {"CallSid": "CA" + "5" * 32, "To": SHAKSHUKA, "From": "+15005550006"}
        url = bridge.public_url + "/twilio/voice"
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                bridge.url + "/twilio/voice",
                data=form,
                headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, url, form)},
            )
        assert "<Connect" in answer.text
        async with asyncio.timeout(5):
            model = await bridge.self_hosted[0].wait_for_close(0)
        assert model.closed_at is not None
        record = await record_of(bridge, form["CallSid"])
        assert record.end_reason == "no_stream"
        assert bridge.app.state.deps.bridge.admission.active_calls == 0


async def test_a_hung_self_hosted_server_overflows_at_open(start_bridge: BridgeFactory) -> None:
    """The server never hand-shakes (§2.5: busy or stuck): the call moves to PolarGrid."""
    options = SimulatorOptions(
        reply="echo", conditioning_delay=0.05, extra={"never_handshake": True}
    )
    async with start_bridge(simulators=options, personaplex_handshake_timeout=0.3) as bridge:
        report = await call(bridge, CITYSAN, audio=tone_mulaw(1.5))
        assert report.frames_received > 0
        record = await record_of(bridge, report.call_sid)
        assert record.provider == "polargrid"
        # The stuck server is rested, not offered to the next call.
        assert bridge.app.state.deps.bridge.admission.pool.free_count() == 0
        assert bridge.app.state.deps.bridge.admission.active_calls == 0
        # What the "busy without a lease holder" alert reads (deploy/prometheus/alerts.yml):
        # the server counted busy, and nobody holding it now.
        async with httpx.AsyncClient() as http:
            text = (await http.get(bridge.url + "/metrics")).text
        server = bridge.self_hosted[0].url
        assert f'phonebridge_model_busy_total{{server="{server}"}} 1.0' in text
        assert re.search(rf'phonebridge_leases_held{{replica="[^"]+",server="{server}"}} 0.0', text)
