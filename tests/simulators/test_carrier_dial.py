"""Each carrier flavour of ``phonebridge dial`` against a small fake bridge on loopback.

The fake bridge (FastAPI + uvicorn; a test double for the real routes that
the leg interface will bring) answers with phonebridge's own answer builders,
checks every signature with phonebridge's own verifiers, parses every frame
with phonebridge's own carrier protocol and sends the frames those modules
build — so these tests prove the simulators speak what the bridge's carrier
side accepts, over real HTTP and WebSocket, including the carrier's REST API
(:class:`FakeCarrierApi`, which Telnyx answers calls through).

Agent script of the fake bridge: on ``start`` play 200 ms of 1 kHz and a mark
``m1``; DTMF ``3``: 1 s of audio, mark ``m2``, clear; ``7``: send a malformed
frame; ``8``: close the socket; ``9``: hang up over the carrier's REST API
(Exotel has none: the socket is closed).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import socket
import struct
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from phonebridge.errors import RemoteProtocolError
from phonebridge.simulators.phone.carriers import (
    CARRIERS,
    CarrierSecrets,
    FakeCarrierApi,
    dial_carrier,
)
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.exotel import applet
from phonebridge.telephony.exotel.auth import check_basic
from phonebridge.telephony.exotel.protocol import ExotelStream
from phonebridge.telephony.plivo import xml as plivo_xml
from phonebridge.telephony.plivo.protocol import PlivoStream
from phonebridge.telephony.plivo.signature import NONCE_HEADER
from phonebridge.telephony.plivo.signature import SIGNATURE_HEADER as PLIVO_SIG
from phonebridge.telephony.plivo.signature import validate as plivo_validate
from phonebridge.telephony.signalwire import cxml
from phonebridge.telephony.signalwire.protocol import SignalWireStream
from phonebridge.telephony.signalwire.signature import SIGNATURE_HEADER as SW_SIG
from phonebridge.telephony.signalwire.signature import validate_form, verify_bearer
from phonebridge.telephony.stream import (
    CallerAudio,
    CarrierStream,
    DigitPressed,
    MarkPlayed,
    PlaybackCleared,
    StreamEnded,
    StreamStarted,
)
from phonebridge.telephony.telnyx import callcontrol
from phonebridge.telephony.telnyx.protocol import TelnyxStream
from phonebridge.telephony.telnyx.signature import (
    SIGNATURE_HEADER,
    STREAM_TOKEN_HEADER,
    TIMESTAMP_HEADER,
    verify_stream_token,
    verify_webhook,
)
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.vonage import ncco
from phonebridge.telephony.vonage import signature as vonage_signature
from phonebridge.telephony.vonage.protocol import VonageStream

PUBLIC = "https://bridge.example.com"
WSS = "wss://bridge.example.com"
TELNYX_KEY = Ed25519PrivateKey.generate()
VONAGE_APP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
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
RATE = 16_000


def tone(rate: int, ms: int, hz: float) -> bytes:
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate)))
        for i in range(rate * ms // 1000)
    )


@dataclass
class Call:
    carrier: str
    call_id: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    events: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class FakeBridge:
    """Answers like the real bridge would, with phonebridge's carrier modules (TEST DOUBLE)."""

    api: FakeCarrierApi
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    by_token: dict[str, Call] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # "carrier:webhook" / "carrier:socket"
    callbacks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sockets_opened: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_call(self, carrier: str, call_id: str) -> Call:
        call = Call(carrier, call_id)
        self.calls.append(call)
        self.by_token[call.token] = call
        return call

    def app(self) -> FastAPI:
        app = FastAPI()
        key_text = TELNYX_KEY.public_key()

        # ----------------------------------------------------------- Telnyx
        @app.post("/telnyx/voice")
        async def telnyx_voice(request: Request) -> Response:
            body = await request.body()
            if not verify_webhook(
                key_text,
                body,
                signature=request.headers.get(SIGNATURE_HEADER),
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                now=time.time(),
            ):
                self.refused.append("telnyx:webhook")
                return Response(status_code=403)
            hook = callcontrol.parse_webhook(body)
            self.callbacks.append(("telnyx", {"event": hook.event_type}))
            if hook.event_type == "call.initiated":
                call = self.new_call("telnyx", hook.call_control_id)
                asyncio.get_running_loop().create_task(self.telnyx_answer(call))
            return Response(status_code=200)

        @app.websocket("/telnyx/media")
        async def telnyx_media(ws: WebSocket) -> None:
            presented = ws.headers.get(STREAM_TOKEN_HEADER)
            call = next(
                (
                    c
                    for c in self.calls
                    if c.carrier == "telnyx" and verify_stream_token(c.token, presented)
                ),
                None,
            )
            await self.serve(ws, call, TelnyxStream(out_codec="L16", out_rate=RATE))

        # ----------------------------------------------------------- Plivo
        async def plivo_signed(request: Request, path: str) -> dict[str, str] | None:
            form = {k: str(v) for k, v in (await request.form()).items()}
            ok = plivo_validate(
                SECRETS.plivo_auth_token,
                "POST",
                PUBLIC + path,
                form,
                nonce=request.headers.get(NONCE_HEADER),
                signature_header=request.headers.get(PLIVO_SIG),
            )
            return form if ok else None

        @app.post("/plivo/voice")
        async def plivo_voice(request: Request) -> Response:
            form = await plivo_signed(request, "/plivo/voice")
            if form is None:
                self.refused.append("plivo:webhook")
                return Response(status_code=403)
            call = self.new_call("plivo", form["CallUUID"])
            document = plivo_xml.stream(
                f"{WSS}/plivo/media/{call.token}",
                sample_rate=RATE,
                headers={"token": call.token},
                status_callback=f"{PUBLIC}/plivo/status",
            )
            return Response(document, media_type="application/xml")

        @app.post("/plivo/status")
        async def plivo_status(request: Request) -> Response:
            form = await plivo_signed(request, "/plivo/status")
            if form is None:
                return Response(status_code=403)
            self.callbacks.append(("plivo", form))
            return Response(status_code=200)

        @app.websocket("/plivo/media/{token}")
        async def plivo_media(ws: WebSocket, token: str) -> None:
            call = self.by_token.get(token)
            await self.serve(ws, call if call and call.carrier == "plivo" else None, PlivoStream())

        # ----------------------------------------------------------- Vonage
        def vonage_ok(authorization: str | None, body: bytes | None = None) -> bool:
            claims = vonage_signature.verify(
                authorization,
                SECRETS.vonage_signature_secret,
                time.time(),
                body=body,
                api_key=SECRETS.vonage_api_key,
            )
            return claims is not None

        @app.get("/vonage/answer")
        async def vonage_answer(request: Request) -> Response:
            if not vonage_ok(request.headers.get("authorization")):
                self.refused.append("vonage:webhook")
                return Response(status_code=403)
            answer = ncco.parse_answer(dict(request.query_params))
            call = self.new_call("vonage", answer.uuid)
            document = ncco.connect_websocket(
                f"{WSS}/vonage/media",
                call=answer,
                sample_rate=RATE,
                headers={"token": call.token},
                event_url=f"{PUBLIC}/vonage/fallback",
            )
            return JSONResponse(document)

        @app.post("/vonage/fallback")
        @app.post("/vonage/event")
        async def vonage_event(request: Request) -> Response:
            body = await request.body()
            if not vonage_ok(request.headers.get("authorization"), body):
                return Response(status_code=403)
            event = ncco.parse_event(body)
            self.callbacks.append(("vonage", {"status": event.status}))
            if request.url.path.endswith("fallback"):
                return JSONResponse(ncco.talk("Sorry, please call again."))
            return Response(status_code=204)

        @app.websocket("/vonage/media")
        async def vonage_media(ws: WebSocket) -> None:
            ok = vonage_ok(ws.headers.get("authorization"))
            await self.serve(ws, Call("vonage") if ok else None, VonageStream())

        # ----------------------------------------------------------- SignalWire
        async def sw_signed(request: Request, path: str) -> dict[str, str] | None:
            form = {k: str(v) for k, v in (await request.form()).items()}
            key = SECRETS.signalwire_signing_key
            return (
                form
                if validate_form(key, PUBLIC + path, form, request.headers.get(SW_SIG))
                else None
            )

        @app.post("/signalwire/voice")
        async def sw_voice(request: Request) -> Response:
            form = await sw_signed(request, "/signalwire/voice")
            if form is None:
                self.refused.append("signalwire:webhook")
                return Response(status_code=403)
            call = self.new_call("signalwire", form["CallSid"])
            document = cxml.connect_stream(
                f"{WSS}/signalwire/media",
                action_url=f"{PUBLIC}/signalwire/ended",
                sample_rate=RATE,
                bearer_token=call.token,
                parameters={"token": call.token},
                status_callback=f"{PUBLIC}/signalwire/status",
            )
            return Response(document, media_type="application/xml")

        @app.post("/signalwire/status")
        @app.post("/signalwire/ended")
        async def sw_after(request: Request) -> Response:
            form = await sw_signed(request, request.url.path)
            if form is None:
                return Response(status_code=403)
            self.callbacks.append(("signalwire", form))
            return Response(twiml.say_and_hangup("Goodbye."), media_type="application/xml")

        @app.websocket("/signalwire/media")
        async def sw_media(ws: WebSocket) -> None:
            auth = ws.headers.get("authorization")
            call = next(
                (
                    c
                    for c in self.calls
                    if c.carrier == "signalwire" and verify_bearer(c.token, auth)
                ),
                None,
            )
            await self.serve(ws, call, SignalWireStream())

        # ----------------------------------------------------------- Exotel
        def exotel_ok(authorization: str | None) -> bool:
            return check_basic(
                SECRETS.exotel_basic_user, SECRETS.exotel_basic_password, authorization
            )

        @app.get("/exotel/voice")
        async def exotel_voice(request: Request) -> Response:
            if not exotel_ok(request.headers.get("authorization")):
                self.refused.append("exotel:webhook")
                return Response(status_code=401)
            call = self.new_call("exotel", request.query_params["CallSid"])
            url = applet.stream_url(
                f"{WSS}/exotel/media",
                sample_rate=RATE,
                parameters={"token": call.token},
                basic_user=SECRETS.exotel_basic_user,
                basic_password=SECRETS.exotel_basic_password,
            )
            return Response(applet.answer(url), media_type="application/json")

        @app.websocket("/exotel/media")
        async def exotel_media(ws: WebSocket) -> None:
            ok = exotel_ok(ws.headers.get("authorization"))
            token = ws.query_params.get("token", "")
            call = self.by_token.get(token) if ok else None
            await self.serve(ws, call, ExotelStream())

        return app

    async def telnyx_answer(self, call: Call) -> None:
        headers = {"Authorization": f"Bearer {SECRETS.telnyx_api_key}"}
        base = f"{self.api.url}/v2/calls/{call.call_id}/actions"
        async with httpx.AsyncClient() as http:
            await http.post(f"{base}/answer", json=callcontrol.answer_command("s"), headers=headers)
            body = callcontrol.streaming_start_command(
                f"{WSS}/telnyx/media",
                auth_token=call.token,
                sample_rate=RATE,
                parameters={"token": call.token},
                client_state="s",
            )
            await http.post(f"{base}/streaming_start", json=body, headers=headers)

    async def rest_hangup(self, call: Call, ws: WebSocket) -> None:
        api = self.api.url
        async with httpx.AsyncClient() as http:
            match call.carrier:
                case "telnyx":
                    await http.post(
                        f"{api}/v2/calls/{call.call_id}/actions/hangup",
                        json={},
                        headers={"Authorization": f"Bearer {SECRETS.telnyx_api_key}"},
                    )
                case "plivo":
                    await http.delete(
                        f"{api}/v1/Account/{SECRETS.plivo_auth_id}/Call/{call.call_id}/",
                        auth=(SECRETS.plivo_auth_id, SECRETS.plivo_auth_token),
                    )
                case "vonage":
                    token = jwt.encode(
                        {"application_id": "app", "iat": int(time.time()), "jti": "j"},
                        VONAGE_APP_KEY,
                        algorithm="RS256",
                    )
                    await http.put(
                        f"{api}/v1/calls/{call.call_id}",
                        json={"action": "hangup"},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                case "signalwire":
                    await http.post(
                        f"{api}/api/laml/2010-04-01/Accounts/{SECRETS.signalwire_project_id}"
                        f"/Calls/{call.call_id}.json",
                        data={"Status": "completed"},
                        auth=(SECRETS.signalwire_project_id, SECRETS.signalwire_api_token),
                    )
                case _:
                    await ws.close()

    async def serve(self, ws: WebSocket, call: Call | None, stream: CarrierStream) -> None:
        if call is None:
            self.refused.append(f"{stream.carrier}:socket")
            await ws.close(code=1008)
            return
        await ws.accept()
        self.sockets_opened += 1
        stream = (
            type(stream)(note=call.notes.append)
            if not isinstance(stream, TelnyxStream)
            else (TelnyxStream(out_codec="L16", out_rate=RATE, note=call.notes.append))
        )
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    call.events.extend(stream.socket_closed())
                    return
                raw = (
                    message.get("text") if message.get("text") is not None else message.get("bytes")
                )
                try:
                    events = stream.receive(raw or b"", loop.time())
                except RemoteProtocolError as exc:
                    call.errors.append(str(exc))
                    await ws.close(1002)
                    return
                for event in events:
                    call.events.append(event)
                    await self.act(ws, call, stream, event)
                if stream.state.value == "ended":
                    await ws.close()
                    return
        except RuntimeError:  # sent after the peer closed
            return

    async def send(self, ws: WebSocket, frames: list[str | bytes]) -> None:
        for frame in frames:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_text(frame)

    async def act(self, ws: WebSocket, call: Call, stream: CarrierStream, event: Any) -> None:
        match event:
            case StreamStarted():
                if call.carrier == "vonage":
                    real = next((c for c in self.calls if c.call_id == event.call_id), None)
                    if real is not None:  # adopt the answered call's record
                        real.events.extend(call.events)
                        call.__dict__.update(real.__dict__)
                        call.events = real.events
                        self.calls[self.calls.index(real)] = call
                await self.send(
                    ws, [*stream.audio(tone(event.sample_rate, 200, 1000)), *stream.mark("m1")]
                )
            case DigitPressed(digit="3"):
                rate = stream.sample_rate
                await self.send(
                    ws, [*stream.audio(tone(rate, 1000, 500)), *stream.mark("m2"), *stream.clear()]
                )
            case DigitPressed(digit="7"):
                await ws.send_text('{"event": "nonsense"')
            case DigitPressed(digit="8"):
                await ws.close()
            case DigitPressed(digit="9"):
                await self.rest_hangup(call, ws)


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    public_pem = (
        VONAGE_APP_KEY.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    credentials = SECRETS.api_credentials()
    credentials.vonage_public_key_pem = public_pem
    async with FakeCarrierApi(credentials) as api:
        fake = FakeBridge(api)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        fake.port = sock.getsockname()[1]
        config = uvicorn.Config(
            fake.app(), log_level="error", ws="websockets-sansio", lifespan="off"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.01)
        try:
            yield fake
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            sock.close()


async def call(fake: FakeBridge, carrier: str, **kwargs: Any) -> DialReport:
    kwargs.setdefault("to", "+14165550123")
    kwargs.setdefault("rate", RATE)
    return await asyncio.wait_for(
        dial_carrier(
            carrier,
            fake.url,
            secrets=SECRETS,
            api=fake.api,
            public_url=PUBLIC,
            io_timeout=5,
            **kwargs,
        ),
        20,
    )


def energy(pcm: bytes) -> float:
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


STATUS = {
    "telnyx": ["streaming.started", "streaming.stopped", "call.hangup"],
    "plivo": ["StartStream", "StopStream"],
    "vonage": ["completed"],
    "signalwire": ["stream-started", "stream-stopped"],
    "exotel": [],
}


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_call_as_each_carrier(bridge: FakeBridge, carrier: str) -> None:
    caller = tone(RATE, 400, 300)
    report = await call(bridge, carrier, audio=caller, dtmf=[(0.1, "5")], hangup_after=0.9)
    assert report.ok, report.protocol_errors
    assert report.webhook_status == 200
    assert report.upgrade_status == 101
    assert report.sample_rate == RATE
    assert report.ended_by == "caller"
    (the_call,) = [c for c in bridge.calls if c.carrier == carrier]
    events = the_call.events
    started = events[0]
    assert isinstance(started, StreamStarted)
    assert started.sample_rate == RATE
    assert started.parameters["token"] == the_call.token
    heard = b"".join(e.pcm16 for e in events if isinstance(e, CallerAudio))
    assert (
        heard[: len(caller)] == caller
    )  # bit-exact at 16 kHz, whatever the byte order on the wire
    assert [e.digit for e in events if isinstance(e, DigitPressed)] == ["5"]
    ended = events[-1]
    assert isinstance(ended, StreamEnded)
    assert (ended.reason == "socket closed") == (carrier in ("plivo", "vonage"))
    # The agent's 200 ms and its mark: played in real time, then echoed.
    assert report.bytes_received >= RATE * 2 // 5
    assert [e for e in events if isinstance(e, MarkPlayed)] == [MarkPlayed("m1")]
    assert len(report.marks_echoed) == 1
    assert report.heard_seconds > 0.5
    assert the_call.errors == []
    kinds = [str(c["kind"]) for c in report.callbacks]
    assert [k for k in kinds if k in STATUS[carrier]] == STATUS[carrier]
    assert all(c.get("status") in (200, 204) for c in report.callbacks), report.callbacks


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_clear_echoes_or_drops_pending_marks_as_the_carrier_does(
    bridge: FakeBridge, carrier: str
) -> None:
    report = await call(bridge, carrier, dtmf=[(0.3, "3")], hangup_after=0.9)
    assert report.ok, report.protocol_errors
    (the_call,) = [c for c in bridge.calls if c.carrier == carrier]
    marks = [e.name for e in the_call.events if isinstance(e, MarkPlayed)]
    cleared = [e for e in the_call.events if isinstance(e, PlaybackCleared)]
    assert report.clears_received == 1
    if carrier in ("plivo", "vonage"):  # pending mark dropped, the clear acknowledged
        assert marks == ["m1"]
        assert len(cleared) == 1
    else:  # pending mark returned at once
        assert marks == ["m1", "m2"]
        assert cleared == []
    # The second second of audio was flushed, not played.
    assert report.heard_seconds < 1.2


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("mode", ["forged", "missing"])
async def test_forged_or_missing_webhook_signature_is_refused(
    bridge: FakeBridge, carrier: str, mode: str
) -> None:
    report = await call(bridge, carrier, webhook_auth=mode, hangup_after=0.5)
    assert report.webhook_status in (401, 403)
    assert report.ended_by == "webhook_failed"
    assert bridge.refused == [f"{carrier}:webhook"]
    assert bridge.sockets_opened == 0
    assert bridge.calls == []


@pytest.mark.parametrize("carrier", [c for c in CARRIERS if c != "plivo"])
@pytest.mark.parametrize("mode", ["forged", "missing"])
async def test_forged_or_missing_socket_auth_opens_nothing(
    bridge: FakeBridge, carrier: str, mode: str
) -> None:
    report = await call(bridge, carrier, socket_auth=mode, hangup_after=0.5)
    assert report.webhook_status == 200
    assert report.ended_by == "stream_failed"
    assert report.upgrade_status != 101
    assert bridge.refused == [f"{carrier}:socket"]
    assert bridge.sockets_opened == 0


async def test_plivo_socket_is_authenticated_by_its_unguessable_path(bridge: FakeBridge) -> None:
    """Plivo documents no handshake auth (CARRIERS.md §2.2): a wrong path token opens nothing."""
    report = await call(
        bridge,
        "plivo",
        hangup_after=0.5,
        connect_override=f"ws://127.0.0.1:{bridge.port}/plivo/media/not-a-token",
    )
    assert report.ended_by == "stream_failed"
    assert bridge.refused == ["plivo:socket"]
    assert [c["kind"] for c in report.callbacks] == ["DroppedStream"]


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_the_bridge_hangs_up_over_rest(bridge: FakeBridge, carrier: str) -> None:
    report = await call(bridge, carrier, dtmf=[(0.2, "9")], hangup_after=3.0)
    assert not report.protocol_errors
    hangups = [r for r in bridge.api.requests if r.carrier == carrier]
    if carrier == "exotel":  # no REST: closing the socket ends the applet
        assert report.ended_by == "bridge"
        assert hangups == []
        return
    assert report.ended_by == "rest_hangup"
    assert hangups[-1].authorized
    assert hangups[-1].action == "hangup"
    assert report.rest_requests[-1]["action"] == "hangup"
    assert report.ended_at_s is not None
    assert report.ended_at_s < 2.0
    # A call hung up is not continued: no action URL, no Vonage fallback.
    assert report.action_url is None
    assert all(c["kind"] != "disconnected" for c in report.callbacks)


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_malformed_app_frame(bridge: FakeBridge, carrier: str) -> None:
    report = await call(bridge, carrier, dtmf=[(0.2, "7")], hangup_after=0.8)
    assert len(report.protocol_errors) == 1
    if carrier == "telnyx":  # an error event, and the stream goes on
        assert report.ended_by == "caller"
        (the_call,) = bridge.calls
        assert any("error event" in note for note in the_call.notes)
    else:
        assert report.ended_by == "protocol_error"
        assert report.close_code == 1002


@pytest.mark.parametrize("carrier", ["vonage", "signalwire", "exotel"])
async def test_the_bridge_closing_the_socket_continues_the_call_the_carriers_way(
    bridge: FakeBridge, carrier: str
) -> None:
    report = await call(bridge, carrier, dtmf=[(0.2, "8")], hangup_after=3.0)
    assert report.ended_by == "bridge"
    if carrier == "vonage":  # disconnected → the fallback NCCO runs
        assert [c["kind"] for c in report.callbacks] == ["disconnected"]
        assert report.said == ["Sorry, please call again."]
    elif carrier == "signalwire":  # the <Connect action> document runs
        assert report.action_status == 200
        assert report.said == ["Goodbye."]
    else:
        assert report.callbacks == []


async def test_narrowband_legs(bridge: FakeBridge) -> None:
    """An 8 kHz caller: Telnyx keeps L16 at the leg's rate; the bridge hears 8 kHz."""
    report = await call(bridge, "telnyx", rate=8_000, hangup_after=0.5)
    assert report.ok
    assert report.sample_rate == 8_000
    started = bridge.calls[0].events[0]
    assert isinstance(started, StreamStarted)
    assert started.sample_rate == 8_000
    commands = json.loads(report.answer_document or "{}")
    assert commands["stream_bidirectional_mode"] == "rtp"


async def test_report_shape_for_a_vonage_call(bridge: FakeBridge, tmp_path: Path) -> None:
    out = tmp_path / "heard.wav"
    report = await call(bridge, "vonage", hangup_after=0.6, out=out)
    data = report.to_dict()
    assert data["carrier"] == "vonage"
    assert data["sample_rate"] == RATE
    assert json.loads(str(data["answer_document"]))[0]["action"] == "connect"
    with wave.open(str(out), "rb") as wav:
        assert wav.getframerate() == RATE
        pcm = wav.readframes(wav.getnframes())
    assert energy(pcm) > 100  # the agent's tone was heard
