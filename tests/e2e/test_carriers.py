"""The five further carriers end to end: carrier simulator -> real bridge -> PersonaPlex simulator.

Each carrier's phone simulator (a TEST DOUBLE: its signed webhook, its answer
handling, its socket auth, frames, playback and end of stream) calls the real
bridge on loopback, whose REST call control goes to the fake carrier API (a
TEST DOUBLE too). The battery of tests/e2e/test_call_path.py, per carrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from phonebridge.calls.bridge import PhoneCall
from phonebridge.calls.outcome import CallEndReason
from phonebridge.calls.pending import PendingCall
from phonebridge.config import CarrierSettings, Settings, SettingsError
from phonebridge.local import LocalBridge, SimulatorOptions
from phonebridge.personas.loader import load_personas
from phonebridge.simulators.phone.carriers import (
    CARRIERS,
    CarrierSecrets,
    FakeCarrierApi,
    dial_carrier,
)
from phonebridge.simulators.phone.carriers.base import CarrierCall
from phonebridge.simulators.phone.carriers.exotel import ExotelWire
from phonebridge.simulators.phone.carriers.plivo import PlivoWire
from phonebridge.simulators.phone.carriers.signalwire import SignalWireWire
from phonebridge.simulators.phone.carriers.telnyx import TelnyxWire
from phonebridge.simulators.phone.carriers.vonage import VonageWire
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.carrier_leg import bridge_call_sid
from phonebridge.telephony.signalwire.signature import SIGNATURE_HEADER as SIGNALWIRE_SIGNATURE
from phonebridge.telephony.signalwire.signature import sign_form
from phonebridge.telephony.telnyx.signature import public_key_text
from phonebridge.telephony.vonage.signature import sign as vonage_sign

from ..conftest import BridgeFactory, record_of
from .leaks import assert_no_leaks, bridge_of

CITYSAN = "+14165550101"  # personaplex, overflow polargrid, fallback: transfer
SHAKSHUKA = "+14165550102"  # personaplex, no overflow, fallback: say
FALLBACK_SAY = (
    "Sorry, we can't take your order by phone right now. Please try again in a little while."
)
TELNYX_ONLY = "+14165550155"  # a number bound to Telnyx (written by the fixture)
BOUND = {  # numbers bound to one carrier each (written by the fixture)
    "telnyx": TELNYX_ONLY,
    "signalwire": "+14165550156",
    "vonage": "+14165550157",
}
TELNYX_KEY = Ed25519PrivateKey.generate()
SECRETS = CarrierSecrets(
    telnyx_private_key=TELNYX_KEY,
    telnyx_api_key="KEYtelnyx",
    plivo_auth_id="MAPLIVO01",
    plivo_auth_token="plivo-token",
    vonage_signature_secret="vonage-signature-secret-0123456789abcdef",
    vonage_api_key="abcd1234",
    signalwire_signing_key="PSKsigning",
    signalwire_project_id="PJproject",
    signalwire_api_token="PTapitoken",
    exotel_basic_user="EXKEY",
    exotel_basic_password="EXTOKEN",
)
WIRES = {
    "telnyx": TelnyxWire,
    "plivo": PlivoWire,
    "vonage": VonageWire,
    "signalwire": SignalWireWire,
    "exotel": ExotelWire,
}


def carrier_settings(api_url: str, rate: int) -> CarrierSettings:
    return CarrierSettings(
        rate=rate,
        telnyx_public_key=public_key_text(TELNYX_KEY),
        telnyx_api_key=SecretStr(SECRETS.telnyx_api_key),
        telnyx_api_url=api_url,
        plivo_auth_id=SECRETS.plivo_auth_id,
        plivo_auth_token=SecretStr(SECRETS.plivo_auth_token),
        plivo_api_url=api_url,
        vonage_signature_secret=SecretStr(SECRETS.vonage_signature_secret),
        vonage_api_key=SECRETS.vonage_api_key,
        signalwire_signing_key=SecretStr(SECRETS.signalwire_signing_key),
        exotel_basic_user=SECRETS.exotel_basic_user,
        exotel_basic_password=SecretStr(SECRETS.exotel_basic_password),
    )


def tone(rate: int, hz: float, seconds: float, level: float = 0.3) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


def share_above(pcm: bytes, rate: int, hz: float) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[freqs > hz].sum() / max(spectrum.sum(), 1.0))


@pytest.fixture
async def api() -> AsyncIterator[FakeCarrierApi]:
    async with FakeCarrierApi(SECRETS.api_credentials()) as running:
        yield running


@pytest.fixture
def bound_persona(personas_dir: Path) -> None:
    text = (personas_dir / "shakshuka.yaml").read_text()
    for carrier, number in BOUND.items():
        bound = text.replace('["+14165550102"]', f'["{number}"]') + f"carrier: {carrier}\n"
        (personas_dir / f"{carrier}-shakshuka.yaml").write_text(bound)


@pytest.fixture
async def bridge(
    start_bridge: BridgeFactory, api: FakeCarrierApi, bound_persona: None
) -> AsyncIterator[LocalBridge]:
    async with start_bridge(carriers=carrier_settings(api.url, 16_000)) as running:
        yield running


async def call(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str, **options: Any
) -> DialReport:
    options.setdefault("to", CITYSAN)
    options.setdefault("rate", 16_000)
    options.setdefault("audio", tone(options["rate"], 440, 1.0))
    options.setdefault("tail", 0.3)
    async with asyncio.timeout(30):
        return await dial_carrier(
            carrier,
            bridge.url,
            secrets=SECRETS,
            api=api,
            public_url=bridge.public_url,
            io_timeout=5,
            **options,
        )


def row_sid(report: DialReport) -> str:
    """Our SID of the call (derived from the carrier's id: carrier_leg.bridge_call_sid)."""
    call_id = report.call_sid
    if report.carrier == "telnyx":  # the call control id, as the bridge's REST calls name it
        path = str(report.rest_requests[0]["path"])
        call_id = path.split("/v2/calls/")[1].split("/actions/", maxsplit=1)[0]
    return bridge_call_sid(report.carrier, call_id)


async def row_of(bridge: LocalBridge, report: DialReport) -> Any:
    return await record_of(bridge, row_sid(report))


def read_json(path: str | None) -> dict[str, Any]:
    assert path is not None
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


# --------------------------------------------------------------------------- set-up, routing


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_call_through_each_carrier(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str
) -> None:
    report = await call(bridge, api, carrier, dtmf=[(0.3, "4")])
    assert report.ok, report.protocol_errors
    assert report.webhook_status == 200
    assert report.upgrade_status == 101
    assert report.ended_by == "caller"
    # The answer names this replica's media socket, over wss.
    assert report.stream_url.startswith(f"wss://bridge.phonebridge.invalid/twilio/{carrier}/media")
    assert report.sample_rate == 16_000
    assert report.bytes_received > 0  # the echo came back: the caller heard the model
    record = await row_of(bridge, report)
    assert record.channel == carrier
    assert record.sample_rate == 16_000
    assert record.persona == "citysan"
    assert record.end_reason == "caller_hangup"
    transcript = read_json(record.transcript_path)
    digits = [event["detail"] for event in transcript["events"] if event["kind"] == "dtmf"]
    assert digits == ["4"]
    model = bridge.self_hosted[0].connections[0]
    assert model.closed_at is not None
    await assert_no_leaks(bridge)


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("mode", ["forged", "missing"])
async def test_forged_or_missing_webhook_signature_opens_nothing(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str, mode: str
) -> None:
    report = await call(bridge, api, carrier, webhook_auth=mode, hangup_after=0.3)
    assert report.webhook_status in (401, 403)
    assert report.upgrade_status is None
    assert bridge.self_hosted[0].connections == []
    assert len(bridge_of(bridge).pending) == 0


@pytest.mark.parametrize("carrier", [c for c in CARRIERS if c != "plivo"])
@pytest.mark.parametrize("mode", ["forged", "missing"])
async def test_forged_or_missing_socket_auth_opens_no_model_session(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str, mode: str
) -> None:
    report = await call(bridge, api, carrier, socket_auth=mode, hangup_after=0.3)
    assert report.webhook_status == 200
    assert report.upgrade_status == 403
    assert report.ended_by == "stream_failed"
    # The model session the signed webhook opened is the only one, and no
    # socket claimed it: the reservation is freed (at once or at its deadline).
    assert len(bridge.self_hosted[0].connections) <= 1
    assert bridge_of(bridge).live == {}


async def test_a_plivo_socket_on_a_wrong_path_is_refused(
    bridge: LocalBridge, api: FakeCarrierApi
) -> None:
    """Plivo signs no upgrade (CARRIERS.md §2.2): the unguessable path is the auth."""
    ws = bridge.url.replace("http://", "ws://") + "/twilio/plivo/media/not-a-token"
    report = await call(bridge, api, "plivo", connect_override=ws, hangup_after=0.3)
    assert report.upgrade_status == 403
    assert bridge_of(bridge).live == {}
    # The status callback saying the stream dropped freed the reservation at once.
    assert [c["kind"] for c in report.callbacks] == ["DroppedStream"]
    async with asyncio.timeout(5):
        await bridge.self_hosted[0].wait_for_close(0)
    assert len(bridge_of(bridge).pending) == 0


async def test_a_number_bound_to_another_carrier_is_not_routed(
    bridge: LocalBridge, api: FakeCarrierApi
) -> None:
    ok = await call(bridge, api, "telnyx", to=TELNYX_ONLY, hangup_after=0.5)
    assert ok.ok
    assert (await row_of(bridge, ok)).persona == "telnyx-shakshuka"
    refused = await call(bridge, api, "signalwire", to=TELNYX_ONLY, hangup_after=0.5)
    assert refused.upgrade_status is None
    assert "not in service" in refused.said[0]
    assert len(bridge.self_hosted[0].connections) == 1  # only the Telnyx call's


@pytest.mark.parametrize(("thief", "owner"), [("signalwire", "telnyx"), ("telnyx", "vonage")])
async def test_no_cross_talk_between_carriers(
    bridge: LocalBridge, api: FakeCarrierApi, thief: str, owner: str
) -> None:
    """A socket of one carrier presenting a token another carrier's call reserved is refused."""
    core = bridge_of(bridge)
    persona = core.persona_book().for_number(CITYSAN)
    assert persona is not None
    reserved = await core.answer_phone(
        PhoneCall(
            owner,
            bridge_call_sid(owner, "owner-call-1"),
            "+15005550006",
            CITYSAN,
            sample_rate=16_000,
        )
    )
    assert isinstance(reserved, PendingCall)
    header = (
        {"x-telnyx-streaming-auth-token": reserved.token}
        if thief == "telnyx"
        else {"Authorization": f"Bearer {reserved.token}"}
    )
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            bridge.url.replace("http://", "ws://") + f"/twilio/{thief}/media",
            additional_headers=header,
        ):
            pass
    assert refused.value.response.status_code == 403
    assert core.pending_call(reserved.token) is reserved  # not burnt, still its owner's
    await core.abandon(reserved, CallEndReason.NO_STREAM, "test over")


async def ask_after_stream(bridge: LocalBridge, carrier: str, call_id: str, to: str) -> str:
    """The carrier's signed end-of-stream request for a call no replica holds; the answer text."""
    async with httpx.AsyncClient() as http:
        if carrier == "signalwire":  # the <Connect action> request
            path = "/twilio/signalwire/stream-ended"
            form = {
                "CallSid": call_id,
                "To": to,
                "From": "+15005550006",
                "CallStatus": "in-progress",
            }
            signature = sign_form(SECRETS.signalwire_signing_key, bridge.public_url + path, form)
            headers = {SIGNALWIRE_SIGNATURE: signature}
            response = await http.post(bridge.url + path, data=form, headers=headers)
        else:  # Vonage's disconnected event
            event = {"status": "disconnected", "uuid": call_id, "headers": {"to": to}}
            body = json.dumps(event).encode()
            bearer = vonage_sign(
                SECRETS.vonage_signature_secret,
                time.time(),
                api_key=SECRETS.vonage_api_key,
                jti=call_id,
                body=body,
            )
            headers = {"Authorization": f"Bearer {bearer}", "content-type": "application/json"}
            response = await http.post(bridge.url + "/vonage/event", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.parametrize("carrier", ["signalwire", "vonage"])
async def test_a_dead_replicas_call_is_routed_by_the_carrier_of_the_request(
    bridge: LocalBridge, carrier: str
) -> None:
    """RELIABILITY.md: a call no replica holds gets its persona's fallback, found as the
    call webhook found it — by the dialled number *through this carrier*."""
    fallback = "Sorry, we can't take your order by phone right now."
    own = await ask_after_stream(bridge, carrier, f"{carrier}-gone-1", BOUND[carrier])
    assert fallback in own
    # A number bound to another carrier is not this call's persona: hang up.
    other = await ask_after_stream(bridge, carrier, f"{carrier}-gone-2", TELNYX_ONLY)
    assert fallback not in other
    assert "Hangup" in other if carrier == "signalwire" else json.loads(other) == []


# --------------------------------------------------------------------------- the conversation


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_silence_fill_through_the_carriers_gaps(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str
) -> None:
    report = await call(
        bridge, api, carrier, audio=tone(16_000, 440, 2.0), gaps=[(0.3, 1.3)], tail=0.2
    )
    assert report.ok, report.protocol_errors
    model = bridge.self_hosted[0].connections[0]
    assert model.max_input_gap < 0.5  # the model was fed every 20 ms through the silence
    assert model.input_samples >= 24_000 * 1.5


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_hang_up_closes_the_model_socket(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str
) -> None:
    report = await call(bridge, api, carrier, hangup_after=0.8)
    assert report.ended_by == "caller"
    async with asyncio.timeout(5):
        model = await bridge.self_hosted[0].wait_for_close(0)
    assert model.closed_at is not None
    assert bridge_of(bridge).admission.active_calls == 0


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_busy_then_overflow(bridge: LocalBridge, api: FakeCarrierApi, carrier: str) -> None:
    first = asyncio.create_task(
        call(bridge, api, carrier, to=SHAKSHUKA, audio=tone(16_000, 440, 2.5))
    )
    await asyncio.sleep(0.6)
    busy = await call(bridge, api, carrier, to=SHAKSHUKA, hangup_after=0.3)
    overflow = await call(bridge, api, carrier, to=CITYSAN, hangup_after=0.5)
    await first
    assert busy.upgrade_status is None  # no stream for a busy call
    if carrier == "exotel":  # no answer document: the flow's next applet speaks
        assert busy.webhook_status == 503
    else:
        assert "busy" in busy.said[0].lower()
    if carrier == "telnyx":  # spoken over REST, then hung up when speak ended
        assert [r["action"] for r in busy.rest_requests] == ["answer", "speak", "hangup"]
    assert (await row_of(bridge, busy)).end_reason == "busy"
    assert overflow.bytes_received > 0
    assert (await row_of(bridge, overflow)).provider == "polargrid"
    assert len(bridge.self_hosted[0].connections) == 1
    await assert_no_leaks(bridge)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_model_death_leads_to_the_carriers_fallback(
    start_bridge: BridgeFactory, api: FakeCarrierApi, bound_persona: None, carrier: str
) -> None:
    options = SimulatorOptions(reply="echo", conditioning_delay=0.05, extra={"die_after": 0.5})
    async with start_bridge(
        simulators=options, carriers=carrier_settings(api.url, 16_000)
    ) as bridge:
        report = await call(bridge, api, carrier, to=SHAKSHUKA, audio=tone(16_000, 440, 3.0))
        shakshuka = load_personas(bridge.settings.personas_dir).by_id("shakshuka")
        assert shakshuka is not None
        record = await row_of(bridge, report)
        assert record.end_reason == "model_ended"
        match carrier:
            case "telnyx":  # Call Control: speak the apology, hang up once speak ended
                assert report.said == [shakshuka.fallback.say]
                actions = [r["action"] for r in report.rest_requests]
                assert actions[-2:] == ["speak", "hangup"]
                assert [c["kind"] for c in report.callbacks][-2:] == [
                    "call.speak.ended",
                    "call.hangup",
                ]
            case "plivo":  # REST transfer of the A leg to our fallback document, fetched
                assert report.ended_by == "rest_hangup"
                (transfer,) = [r for r in report.rest_requests if r["action"] == "transfer"]
                body = transfer["body"]
                assert isinstance(body, dict)
                assert body["aleg_url"].endswith(f"/twilio/plivo/after/{report.call_sid}")
                assert report.action_url == body["aleg_url"]
                assert report.action_status == 200
                assert report.said == [shakshuka.fallback.say]
                assert report.twiml_verbs[-2:] == ["Speak", "Hangup"]
            case "vonage":  # the disconnected event is answered with the fallback NCCO
                assert [c["kind"] for c in report.callbacks] == ["disconnected"]
                assert report.said == [shakshuka.fallback.say]
            case "signalwire":  # the <Connect action> answers the apology
                assert report.action_status == 200
                assert report.said == [shakshuka.fallback.say]
            case "exotel":  # the socket closes: the call flow's next applet takes over
                assert report.ended_by == "bridge"
        await assert_no_leaks(bridge)


def broken_frame(carrier: str, kind: str) -> str | bytes:
    if kind == "oversize":  # over the server's 64 KiB frame limit: uvicorn closes 1009
        if carrier == "vonage":
            return b"\x00" * 100_000
        return '{"event":"media","media":{"payload":"' + "A" * 100_000 + '"}}'
    return b"\x01\x02\x03" if carrier == "vonage" else '{"event": "media", "me'


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("kind", ["malformed", "oversize"])
async def test_a_malformed_or_oversize_carrier_message_ends_the_call_with_protocol_error(
    bridge: LocalBridge,
    api: FakeCarrierApi,
    carrier: str,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RELIABILITY.md: a stream that breaks its protocol ends the call (no guessing)."""
    wire = WIRES[carrier]
    good = wire.media
    sent = 0

    def broken_after_ten(self: Any, pcm16: bytes, timestamp_ms: int) -> str | bytes:
        nonlocal sent
        sent += 1
        if sent == 10:
            return broken_frame(carrier, kind)
        return good(self, pcm16, timestamp_ms)

    monkeypatch.setattr(wire, "media", broken_after_ten)
    report = await call(bridge, api, carrier, audio=tone(16_000, 440, 1.5))
    record = await row_of(bridge, report)
    assert record.end_reason == "protocol_error"
    assert report.ended_by in ("bridge", "rest_hangup")
    if kind == "oversize":
        assert report.close_code in (1009, 1000)  # uvicorn's refusal, or our close after it
    await assert_no_leaks(bridge)


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_caller_drop_without_stop(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str
) -> None:
    """The socket closes with no end-of-stream message: a drop where the carrier has ``stop``,
    the normal hang-up where the socket's close *is* the end (Plivo, Vonage)."""
    report = await call(bridge, api, carrier, hangup_after=0.6, send_stop=False)
    assert report.ended_by == "caller_dropped"
    record = await row_of(bridge, report)
    has_stop = carrier in ("telnyx", "signalwire", "exotel")
    assert record.end_reason == ("caller_dropped" if has_stop else "caller_hangup")
    async with asyncio.timeout(5):
        model = await bridge.self_hosted[0].wait_for_close(0)
    assert model.closed_at is not None
    await assert_no_leaks(bridge)


@pytest.mark.parametrize("carrier", ["telnyx", "signalwire", "exotel"])
async def test_stop_twice_and_media_after_stop_are_ignored(
    bridge: LocalBridge,
    api: FakeCarrierApi,
    carrier: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stop_twice_then_media(self: CarrierCall, socket: ClientConnection) -> None:
        assert self.wire is not None
        frames = [self.wire.stop(), self.wire.stop(), self.wire.media(bytes(640), 0)]
        with contextlib.suppress(ConnectionClosed):
            for frame in frames:
                assert frame is not None
                await self.send(socket, frame)

    monkeypatch.setattr(CarrierCall, "end_stream", stop_twice_then_media)
    report = await call(bridge, api, carrier, hangup_after=0.6)
    assert report.ended_by == "caller"
    assert (await row_of(bridge, report)).end_reason == "caller_hangup"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    await assert_no_leaks(bridge)


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_media_before_start_is_refused_and_the_reservation_freed(
    start_bridge: BridgeFactory,
    api: FakeCarrierApi,
    bound_persona: None,
    carrier: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No call is claimed by a stream that breaks its order; the model session the
    webhook opened is closed when the carrier reports the stream's end (at the pending
    deadline on Exotel, which reports nothing), and the caller hears the fallback
    where the carrier lets us speak after a stream."""
    wire = WIRES[carrier]
    good = wire.opening

    def media_first(self: Any, parameters: Any) -> list[str | bytes]:
        frames: list[str | bytes] = good(self, parameters)
        return [*frames[:-1], self.media(bytes(self.frame_bytes), 0), frames[-1]]

    monkeypatch.setattr(wire, "opening", media_first)
    async with start_bridge(
        carriers=carrier_settings(api.url, 16_000), pending_timeout=1.0
    ) as bridge:
        report = await call(bridge, api, carrier, to=SHAKSHUKA, hangup_after=1.0)
        assert report.upgrade_status == 101
        assert report.close_code == 1008
        assert report.ended_by == "bridge"
        assert (await row_of(bridge, report)).end_reason == "no_stream"
        async with asyncio.timeout(5):
            await bridge.self_hosted[0].wait_for_close(0)
        if carrier in ("telnyx", "signalwire", "vonage"):
            assert report.said == [FALLBACK_SAY]
        await assert_no_leaks(bridge)


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_unknown_events_are_skipped_counted_and_logged_once(
    bridge: LocalBridge,
    api: FakeCarrierApi,
    carrier: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Carriers add events: an unknown one is skipped (the call goes on), logged once
    per socket whatever the count, and counted in the stream's totals at the end."""
    caplog.set_level(logging.INFO)
    wire = WIRES[carrier]
    good = wire.opening
    event = "websocket:future-thing" if carrier == "vonage" else "future_thing"
    unknown = json.dumps({"event": event, "detail": {"x": 1}})

    def with_unknown(self: Any, parameters: Any) -> list[str | bytes]:
        return [*good(self, parameters), unknown, unknown, unknown]

    monkeypatch.setattr(wire, "opening", with_unknown)
    report = await call(bridge, api, carrier, hangup_after=0.6)
    assert report.ended_by == "caller"
    assert report.bytes_received > 0
    record = await row_of(bridge, report)
    assert record.end_reason == "caller_hangup"
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if f"unknown event '{event}' skipped" in m]) == 1
    totals = [m for m in messages if m.startswith(f"{carrier} stream: ")]
    assert len(totals) == 1
    counted = int(totals[0].split(": ")[1].split(" unknown")[0])
    assert counted >= 3  # the three (SignalWire's L16 byte-order note is a tolerated one too)
    await assert_no_leaks(bridge)


# --------------------------------------------------------------------------- wideband


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("rate", [16_000, 8_000])
async def test_a_6khz_tone_reaches_the_model_only_on_a_wideband_leg(
    start_bridge: BridgeFactory, api: FakeCarrierApi, carrier: str, rate: int
) -> None:
    options = SimulatorOptions(
        reply="echo", conditioning_delay=0.05, extra={"keep_input_seconds": 10}
    )
    async with start_bridge(simulators=options, carriers=carrier_settings(api.url, rate)) as br:
        report = await call(
            br, api, carrier, rate=rate, audio=tone(rate, 6000 if rate > 8000 else 3000, 1.5)
        )
        assert report.ok, report.protocol_errors
        heard = bytes(br.self_hosted[0].connections[0].input_pcm)
        record = await row_of(br, report)
        assert record.sample_rate == rate
        assert record.recording_path is not None
        with wave.open(record.recording_path, "rb") as wav:
            assert wav.getframerate() == rate
            stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
        caller = stereo[0::2].tobytes()
        if rate == 16_000:
            assert share_above(heard, 24_000, 4000) > 0.5  # the 6 kHz tone crossed Opus
            assert share_above(caller, rate, 4000) > 0.5  # and was recorded wideband
        else:
            assert share_above(heard, 24_000, 4000) < 0.01  # narrowband as before
            assert share_above(caller, rate, 2000) > 0.5


# --------------------------------------------------------------------------- start-up


async def test_a_bridge_for_telnyx_only_starts_and_twilio_answers_404(
    start_bridge: BridgeFactory, api: FakeCarrierApi
) -> None:
    telnyx_only = CarrierSettings(
        telnyx_public_key=public_key_text(TELNYX_KEY),
        telnyx_api_key=SecretStr(SECRETS.telnyx_api_key),
        telnyx_api_url=api.url,
    )
    async with start_bridge(carriers=telnyx_only, twilio_auth_token=None) as bridge:
        assert bridge.settings.twilio_auth_token is None
        report = await call(bridge, api, "telnyx", hangup_after=0.5)
        assert report.ok
        for carrier in ("plivo", "signalwire"):
            off = await call(bridge, api, carrier, hangup_after=0.3)
            assert off.webhook_status == 404
        async with httpx.AsyncClient() as http:
            twilio = await http.post(bridge.url + "/twilio/voice", data={"CallSid": "CA1"})
        assert twilio.status_code == 404


def test_no_carrier_at_all_is_one_line() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"PHONEBRIDGE_PUBLIC_URL": "https://x.example"})
    lines = [p for p in refused.value.problems if "TWILIO_AUTH_TOKEN" in p]
    assert len(lines) == 1
    assert "\n" not in lines[0]
