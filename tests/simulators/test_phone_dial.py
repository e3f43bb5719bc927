"""The phone simulator against a small fake bridge on loopback (FastAPI + uvicorn).

The fake bridge checks every signature with phonebridge's own signature module
and parses every stream message with :class:`MediaStreamProtocol`, so these
tests also prove the simulator sends what the bridge's Twilio side accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import struct
import wave
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response

from phonebridge.audio.g711 import pcm16_to_ulaw
from phonebridge.errors import RemoteProtocolError
from phonebridge.simulators.phone import DialReport, dial
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.events import Dtmf, Mark, Media, Start, Stop, TwilioEvent
from phonebridge.telephony.twilio.protocol import (
    MediaStreamProtocol,
    clear_message,
    mark_message,
    media_message,
)
from phonebridge.telephony.twilio.signature import (
    SIGNATURE_HEADER,
    validate_stream_upgrade,
    validate_webhook,
)

TOKEN = "test-token-0123456789"
PUBLIC = "https://bridge.example.com"
STREAM_URL = "wss://bridge.example.com/twilio/media"
ACTION_URL = f"{PUBLIC}/twilio/stream-ended"
TONE = pcm16_to_ulaw(
    b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(160)
    )
)  # 20 ms of a 440 Hz tone

AgentScript = Callable[[WebSocket, str, "FakeBridge"], Coroutine[Any, Any, None]]


@dataclass
class FakeBridge:
    """Answers like the real bridge would and records what the 'phone' sent."""

    agent: AgentScript | None = None
    twiml_answer: str | None = None  # None: <Connect><Stream>
    stream_url: str = STREAM_URL
    upgrade_token: str = TOKEN
    webhooks: list[dict[str, str]] = field(default_factory=list)
    actions: list[dict[str, str]] = field(default_factory=list)
    events: list[tuple[float, TwilioEvent]] = field(default_factory=list)
    raw_messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    upgrades_rejected: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        app = FastAPI()

        async def signed(request: Request, path: str) -> dict[str, str] | None:
            form = {k: str(v) for k, v in (await request.form()).items()}
            ok = validate_webhook(TOKEN, PUBLIC + path, form, request.headers.get(SIGNATURE_HEADER))
            return form if ok else None

        @app.post("/twilio/voice")
        async def voice(request: Request) -> Response:
            form = await signed(request, "/twilio/voice")
            if form is None:
                return Response("forbidden", status_code=403)
            self.webhooks.append(form)
            answer = self.twiml_answer or twiml.connect_stream(
                self.stream_url, ACTION_URL, {"token": "one-time", "to": form["To"]}
            )
            return Response(answer, media_type="application/xml")

        @app.post("/twilio/stream-ended")
        async def ended(request: Request) -> Response:
            form = await signed(request, "/twilio/stream-ended")
            if form is None:
                return Response("forbidden", status_code=403)
            self.actions.append(form)
            return Response(twiml.say_and_hangup("Goodbye."), media_type="application/xml")

        @app.websocket("/twilio/media")
        async def media(ws: WebSocket) -> None:
            if not validate_stream_upgrade(
                self.upgrade_token, self.stream_url, ws.headers.get(SIGNATURE_HEADER)
            ):
                self.upgrades_rejected += 1
                await ws.close(code=1008)
                return
            await ws.accept()
            await self.serve_stream(ws)

        return app

    async def serve_stream(self, ws: WebSocket) -> None:
        loop = asyncio.get_running_loop()
        proto = MediaStreamProtocol()
        agent_task: asyncio.Task[None] | None = None
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text") or message.get("bytes") or b""
                if isinstance(raw, str):
                    self.raw_messages.append(raw)
                try:
                    event = proto.receive(raw, loop.time())
                except RemoteProtocolError as exc:
                    self.errors.append(str(exc))
                    await ws.close(1002)
                    return
                if event is None:
                    continue
                self.events.append((loop.time(), event))
                if isinstance(event, Start) and self.agent is not None:
                    agent_task = asyncio.create_task(self.agent(ws, event.stream_sid, self))
        finally:
            if agent_task is not None:
                agent_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await agent_task

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]


@pytest.fixture
async def bridge() -> AsyncIterator[FakeBridge]:
    fake = FakeBridge()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    fake.port = sock.getsockname()[1]
    config = uvicorn.Config(fake.app(), log_level="error", ws="websockets-sansio", lifespan="off")
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


async def call(fake: FakeBridge, **kwargs: Any) -> DialReport:
    kwargs.setdefault("to", "+14165550123")
    kwargs.setdefault("auth_token", TOKEN)
    kwargs.setdefault("public_url", PUBLIC)
    return await asyncio.wait_for(dial(fake.url, **kwargs), 20)


def read_wav(path: Path) -> tuple[tuple[int, int, int], list[int]]:
    with wave.open(str(path), "rb") as wav:
        params = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
        frames = wav.readframes(wav.getnframes())
    return params, [s for (s,) in struct.iter_unpack("<h", frames)]


# ---------------------------------------------------------------- the happy path


async def agent_speaks_then_marks(ws: WebSocket, sid: str, fake: FakeBridge) -> None:
    for _ in range(10):  # 200 ms of tone
        await ws.send_text(media_message(sid, TONE))
    fake.sent_at["m1"] = asyncio.get_running_loop().time()
    await ws.send_text(mark_message(sid, "m1"))


async def test_signed_call_streams_like_twilio(bridge: FakeBridge, tmp_path: Path) -> None:
    bridge.agent = agent_speaks_then_marks
    caller_audio = b"\x01" * 160 * 15  # 300 ms
    out = tmp_path / "heard.wav"
    report = await call(bridge, audio=caller_audio, tail=0.4, out=out, from_="+14165550100")

    # The webhook: signed (else 403), Twilio's parameters.
    assert report.webhook_status == 200
    (form,) = bridge.webhooks
    assert form == {
        "CallSid": report.call_sid,
        "AccountSid": report.account_sid,
        "From": "+14165550100",
        "To": "+14165550123",
        "Called": "+14165550123",
        "Caller": "+14165550100",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    # The stream: signed upgrade, connected/start/media.../stop, parsed by the bridge's protocol.
    assert bridge.upgrades_rejected == 0
    assert bridge.errors == []
    kinds = [type(e).__name__ for _, e in bridge.events]
    assert kinds[:2] == ["Connected", "Start"]
    assert kinds[-1] == "Stop"
    (start,) = bridge.of(Start)
    assert dict(start.custom_parameters) == {"token": "one-time", "to": "+14165550123"}
    assert start.call_sid == report.call_sid
    media = bridge.of(Media)
    assert len(media) == report.frames_sent == 35  # 300 ms audio + 400 ms tail
    assert [m.chunk for m in media] == list(range(1, 36))
    assert [m.payload for m in media[:15]] == [b"\x01" * 160] * 15
    first_media = json.loads(next(r for r in bridge.raw_messages if '"media"' in r))
    assert isinstance(first_media["sequenceNumber"], str)
    assert isinstance(first_media["media"]["chunk"], str)
    assert isinstance(first_media["media"]["timestamp"], str)
    # Marks come back only after the 200 ms queued before them has played.
    (mark_time, mark) = next((t, e) for t, e in bridge.events if isinstance(e, Mark))
    assert mark.name == "m1"
    assert mark_time - bridge.sent_at["m1"] >= 0.15
    assert report.marks_echoed == ["m1"]
    # The report and what the caller heard.
    assert report.ok
    assert report.ended_by == "caller"
    assert report.frames_received == 10
    assert report.agent_audio_seconds == pytest.approx(0.2)
    assert report.first_agent_audio_after_start_s is not None
    assert report.action_url is None  # the caller hung up: nothing to continue
    assert bridge.actions == []
    params, samples = read_wav(out)
    assert params == (8000, 1, 2)
    loud = [i for i, s in enumerate(samples) if abs(s) > 1000]
    assert 1400 <= len(loud) <= 1600  # the 200 ms tone, played once
    assert report.heard_seconds == pytest.approx(len(samples) / 8000)
    assert report.heard_seconds >= 0.6


async def test_gaps_and_dtmf_fast(bridge: FakeBridge) -> None:
    report = await call(
        bridge,
        audio=b"\x02" * 160 * 50,
        fast=True,
        tail=0.0,
        gaps=[(0.2, 0.3)],
        dtmf=[(0.6, "12#")],
    )
    assert report.ok
    assert bridge.errors == []
    stamps = [m.timestamp_ms for m in bridge.of(Media)]
    assert len(stamps) == 35
    assert not [t for t in stamps if 200 <= t < 500]
    assert [d.digit for d in bridge.of(Dtmf)] == ["1", "2", "#"]
    assert [d.track for d in bridge.of(Dtmf)] == ["inbound_track"] * 3
    # DTMF sits between the frames of its time on the wire.
    order = [e for _, e in bridge.events if isinstance(e, Media | Dtmf)]
    first_dtmf = next(i for i, e in enumerate(order) if isinstance(e, Dtmf))
    before = order[first_dtmf - 1]
    assert isinstance(before, Media)
    assert before.timestamp_ms == 580
    assert report.dtmf_sent == ["1", "2", "#"]


async def test_clear_empties_playback_and_echoes_pending_marks(
    bridge: FakeBridge, tmp_path: Path
) -> None:
    async def agent(ws: WebSocket, sid: str, fake: FakeBridge) -> None:
        for _ in range(100):  # 2 s queued
            await ws.send_text(media_message(sid, TONE))
        await ws.send_text(mark_message(sid, "long"))
        await asyncio.sleep(0.1)
        fake.sent_at["clear"] = asyncio.get_running_loop().time()
        await ws.send_text(clear_message(sid))

    bridge.agent = agent
    out = tmp_path / "heard.wav"
    report = await call(bridge, hangup_after=0.8, out=out)
    assert report.ok
    assert report.clears_received == 1
    assert report.marks_echoed == ["long"]
    (mark_time, _) = next((t, e) for t, e in bridge.events if isinstance(e, Mark))
    assert mark_time >= bridge.sent_at["clear"]  # echoed by the clear, not by playback
    _, samples = read_wav(out)
    loud = [s for s in samples if abs(s) > 1000]
    assert 0 < len(loud) < 8000 * 0.7  # the 2 s of tone was cut short


# ---------------------------------------------------------------- rejections, like Twilio


async def test_binary_frame_fails_the_stream_and_continues_at_the_action_url(
    bridge: FakeBridge,
) -> None:
    async def agent(ws: WebSocket, sid: str, fake: FakeBridge) -> None:
        await ws.send_bytes(TONE)

    bridge.agent = agent
    report = await call(bridge, hangup_after=2.0)
    assert [e.code for e in report.protocol_errors] == [31950]
    assert report.ended_by == "protocol_error"
    assert report.close_code == 1002
    assert not report.ok
    # Twilio continues the call at <Connect action>, signed (else the fake answers 403).
    assert report.action_url == ACTION_URL
    assert report.action_status == 200
    assert len(bridge.actions) == 1
    assert bridge.actions[0]["CallSid"] == report.call_sid
    assert report.said == ["Goodbye."]


@pytest.mark.parametrize(
    "build",
    [
        lambda sid: json.dumps({"event": "clear", "streamSid": sid, "extra": 1}),
        lambda sid: clear_message("MZ" + "f" * 32),
        lambda sid: json.dumps({"event": "play", "streamSid": sid}),
        lambda sid: "{not json",
    ],
    ids=["extra field", "wrong streamSid", "unknown event", "invalid JSON"],
)
async def test_invalid_messages_are_31951(bridge: FakeBridge, build: Callable[[str], str]) -> None:
    async def agent(ws: WebSocket, sid: str, fake: FakeBridge) -> None:
        await ws.send_text(build(sid))

    bridge.agent = agent
    report = await call(bridge, hangup_after=2.0)
    assert [e.code for e in report.protocol_errors] == [31951]
    assert report.ended_by == "protocol_error"


async def test_bridge_closing_the_stream_runs_the_action_url(bridge: FakeBridge) -> None:
    async def agent(ws: WebSocket, sid: str, fake: FakeBridge) -> None:
        await ws.send_text(media_message(sid, TONE))
        await asyncio.sleep(0.1)
        await ws.close(1000)

    bridge.agent = agent
    report = await call(bridge, hangup_after=5.0)
    assert report.ok
    assert report.ended_by == "bridge"
    assert report.close_code == 1000
    assert report.frames_received == 1
    assert report.action_status == 200
    assert report.twiml_verbs == ["Connect", "Say", "Hangup"]
    assert bridge.of(Stop) == []


async def test_hang_up_without_stop(bridge: FakeBridge) -> None:
    report = await call(bridge, hangup_after=0.1, send_stop=False)
    assert report.ended_by == "caller_dropped"
    assert bridge.of(Stop) == []
    assert bridge.of(Media)


# ---------------------------------------------------------------- set-up failures


async def test_wrong_token_webhook_is_refused(bridge: FakeBridge) -> None:
    report = await call(bridge, auth_token="forged", hangup_after=0.1)
    assert report.webhook_status == 403
    assert report.ended_by == "webhook_failed"
    assert [e.code for e in report.protocol_errors] == [11200]
    assert not report.ok
    assert bridge.webhooks == []


async def test_unsigned_upgrade_is_refused(bridge: FakeBridge) -> None:
    bridge.upgrade_token = "the bridge expects another token"
    report = await call(bridge, hangup_after=0.1)
    assert report.webhook_status == 200
    assert report.upgrade_status == 403
    assert [e.code for e in report.protocol_errors] == [31920]
    assert report.ended_by == "stream_failed"
    assert bridge.upgrades_rejected == 1
    assert report.action_status == 200  # Twilio moves on to the action URL


async def test_query_string_in_stream_url_never_connects(bridge: FakeBridge) -> None:
    bridge.twiml_answer = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://bridge.example.com/twilio/media?token=x"/></Connect></Response>'
    )
    report = await call(bridge, hangup_after=0.1)
    assert [e.code for e in report.protocol_errors] == [31920]
    assert report.ended_by == "stream_failed"
    assert bridge.events == []


async def test_refused_stream_is_31902(bridge: FakeBridge) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    report = await call(bridge, hangup_after=0.1, connect_override=f"ws://127.0.0.1:{port}")
    assert [e.code for e in report.protocol_errors] == [31902]
    assert report.connected_url == f"ws://127.0.0.1:{port}/twilio/media"
    assert report.ended_by == "stream_failed"


async def test_busy_answer_is_recorded(bridge: FakeBridge) -> None:
    bridge.twiml_answer = twiml.say_and_hangup("All our agents are busy.")
    report = await call(bridge)
    assert report.ok
    assert report.ended_by == "twiml"
    assert report.said == ["All our agents are busy."]
    assert report.twiml_verbs == ["Say", "Hangup"]
    assert report.upgrade_status is None
    assert json.loads(report.to_json())["ended_by"] == "twiml"


async def test_wav_input_24k_is_accepted(bridge: FakeBridge, tmp_path: Path) -> None:
    path = tmp_path / "caller.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(b"\x00\x10" * (24000 // 5))  # 200 ms
    report = await call(bridge, audio=path, fast=True, tail=0.0)
    assert report.ok
    assert report.frames_sent == len(bridge.of(Media)) == 11  # 200 ms + resampler tail
