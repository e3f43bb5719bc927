"""The carrier flavours' wires against the bridge's own protocol modules (sans-I/O).

Both directions: what each simulated carrier sends parses with the bridge's
parser for that carrier into the events the bridge expects (rate, byte order,
parameters, DTMF, the end), and what the bridge sends is accepted by the
simulated carrier; and each simulated carrier refuses what that carrier
refuses (CARRIERS.md §1-§5).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable
from typing import Any

import pytest

from phonebridge.errors import RemoteProtocolError
from phonebridge.simulators.phone.carriers.base import (
    AppAudio,
    AppClear,
    AppDtmf,
    AppIgnored,
    AppMark,
    CarrierRejected,
    CarrierWire,
)
from phonebridge.simulators.phone.carriers.exotel import ExotelWire, read_stream_url
from phonebridge.simulators.phone.carriers.plivo import PlivoWire
from phonebridge.simulators.phone.carriers.signalwire import SignalWireWire
from phonebridge.simulators.phone.carriers.telnyx import TelnyxWire
from phonebridge.simulators.phone.carriers.vonage import VonageWire
from phonebridge.telephony.exotel.protocol import ExotelStream
from phonebridge.telephony.plivo.protocol import PlivoStream
from phonebridge.telephony.signalwire.protocol import SignalWireStream
from phonebridge.telephony.stream import (
    CallerAudio,
    CarrierStream,
    DigitPressed,
    MarkPlayed,
    PlaybackCleared,
    StreamEnded,
    StreamStarted,
)
from phonebridge.telephony.telnyx.protocol import TelnyxStream
from phonebridge.telephony.vonage.protocol import VonageStream

PARAMS = {"token": "abc123", "persona": "front"}


def tone(rate: int, ms: int, hz: float = 440.0) -> bytes:
    n = rate * ms // 1000
    return b"".join(
        struct.pack("<h", int(9000 * math.sin(2 * math.pi * hz * i / rate))) for i in range(n)
    )


def telnyx(rate: int = 16_000) -> tuple[CarrierWire, CarrierStream]:
    wire = TelnyxWire(
        rate=rate,
        codec="L16",
        out_codec="L16",
        out_rate=16_000,
        rtp=True,
        call_control_id="v3:abc",
        from_number="+15005550006",
        to_number="+14165550123",
        client_state=None,
        auth_token="tok",
    )
    return wire, TelnyxStream(out_codec="L16", out_rate=16_000)


def plivo(rate: int = 16_000) -> tuple[CarrierWire, CarrierStream]:
    wire = PlivoWire(
        encoding="audio/x-l16",
        rate=rate,
        bidirectional=True,
        call_uuid="call-1",
        account_id="MA1",
        extra_headers="token=abc123,persona=front",
    )
    return wire, PlivoStream()


def vonage(rate: int = 16_000) -> tuple[CarrierWire, CarrierStream]:
    headers = {**PARAMS, "call_uuid": "uuid-1", "from": "15005550006", "to": "14165550123"}
    return VonageWire(rate=rate, headers=headers), VonageStream()


def signalwire(rate: int = 16_000) -> tuple[CarrierWire, CarrierStream]:
    return SignalWireWire(rate=rate, call_sid="CA1", account_sid="PJ1"), SignalWireStream()


def exotel(rate: int = 16_000, camel: bool = False) -> tuple[CarrierWire, CarrierStream]:
    wire = ExotelWire(
        rate=rate, call_sid="c1", account_sid="a1", from_="+1500", to="+1416", camel=camel
    )
    return wire, ExotelStream()


def exotel_camel(rate: int = 16_000) -> tuple[CarrierWire, CarrierStream]:
    return exotel(rate, camel=True)


PAIRS: dict[str, Callable[..., tuple[CarrierWire, CarrierStream]]] = {
    "telnyx": telnyx,
    "plivo": plivo,
    "vonage": vonage,
    "signalwire": signalwire,
    "exotel": exotel,
    "exotel-camel": exotel_camel,
}


def feed(stream: CarrierStream, frames: list[str | bytes]) -> list[Any]:
    events: list[Any] = []
    for frame in frames:
        events.extend(stream.receive(frame, 0.0))
    return events


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("rate", [8_000, 16_000])
def test_carrier_frames_parse_with_the_bridge(name: str, rate: int) -> None:
    wire, stream = PAIRS[name](rate)
    caller = tone(rate, wire.frame_ms)
    frames = [*wire.opening(PARAMS), wire.media(caller, 0), wire.media(caller, wire.frame_ms)]
    frames.append(wire.dtmf("7"))
    events = feed(stream, frames)
    started = events[0]
    assert isinstance(started, StreamStarted)
    assert started.sample_rate == rate
    assert {k: started.parameters[k] for k in PARAMS} == PARAMS
    audio = [e for e in events if isinstance(e, CallerAudio)]
    assert len(audio) == 2
    if name == "signalwire" and rate == 8_000:  # mu-law: lossy, but close and the right order
        decoded = struct.unpack(f"<{len(caller) // 2}h", audio[0].pcm16)
        sent = struct.unpack(f"<{len(caller) // 2}h", caller)
        assert max(abs(a - b) for a, b in zip(decoded, sent, strict=True)) < 400
    else:
        # Exact, which proves the byte order (Telnyx L16 is big-endian on the wire).
        assert audio[0].pcm16 == caller
    assert [e.digit for e in events if isinstance(e, DigitPressed)] == ["7"]
    stop = wire.stop()
    ended = feed(stream, [stop]) if stop is not None else stream.socket_closed()
    assert len(ended) == 1
    assert isinstance(ended[0], StreamEnded)
    assert (stop is None) == (name in ("plivo", "vonage"))  # the socket close is their end


@pytest.mark.parametrize("name", PAIRS)
def test_bridge_output_is_accepted_and_marks_round_trip(name: str) -> None:
    wire, stream = PAIRS[name]()
    feed(stream, wire.opening(PARAMS))
    agent = tone(16_000, 230)
    frames = [*stream.audio(agent), *stream.mark("m1"), *stream.clear()]
    judged = [wire.judge(frame) for frame in frames]
    heard = b"".join(m.pcm16 for m in judged if isinstance(m, AppAudio))
    # Every sample arrives (carriers that frame pad the tail with silence).
    assert heard[: len(agent)] == agent
    assert heard[len(agent) :] == b"\x00" * (len(heard) - len(agent))
    marks = [m for m in judged if isinstance(m, AppMark)]
    assert len(marks) == 1
    assert isinstance(judged[-1], AppClear)
    # The carrier's acknowledgement of the mark is the bridge's MarkPlayed("m1").
    assert feed(stream, [wire.mark_played(marks[0].name)]) == [MarkPlayed("m1")]
    acks = feed(stream, wire.cleared())
    assert acks == ([PlaybackCleared()] if name in ("plivo", "vonage") else [])
    assert wire.echoes_marks_on_clear == (name not in ("plivo", "vonage"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


REFUSED: list[tuple[str, Callable[[CarrierWire], str | bytes]]] = [
    ("telnyx", lambda w: b"\x00" * 640),
    ("telnyx", lambda w: "not json"),
    ("telnyx", lambda w: '{"event":"speak"}'),
    ("telnyx", lambda w: json.dumps({"event": "media", "media": {"payload": _b64(b"\0" * 100)}})),
    ("telnyx", lambda w: json.dumps({"event": "media", "media": {"payload": "!!"}})),
    ("telnyx", lambda w: json.dumps({"event": "mark", "mark": {}})),
    ("telnyx", lambda w: json.dumps({"event": "clear", "stream_id": "someone-else"})),
    ("plivo", lambda w: b"\x00" * 640),
    ("plivo", lambda w: json.dumps({"event": "media", "media": {"payload": ""}})),
    (
        "plivo",
        lambda w: json.dumps(
            {
                "event": "playAudio",
                "media": {"contentType": "audio/x-mulaw", "sampleRate": 16000, "payload": ""},
            }
        ),
    ),
    ("plivo", lambda w: json.dumps({"event": "checkpoint", "streamId": "other", "name": "x"})),
    ("plivo", lambda w: json.dumps({"event": "sendDTMF", "dtmf": "12x"})),
    ("vonage", lambda w: b"\x00" * 100),  # not one 20 ms frame
    ("vonage", lambda w: b"\x00" * 1280),  # two frames in one message
    ("vonage", lambda w: '{"action":"talk"}'),
    ("vonage", lambda w: '{"action":"notify","payload":"x"}'),
    ("signalwire", lambda w: b"{}"),
    ("signalwire", lambda w: json.dumps({"event": "clear", "streamSid": "MZother"})),
    ("exotel", lambda w: json.dumps({"event": "clear", "stream_sid": "other"})),
    ("exotel", lambda w: b"\x00"),
]


@pytest.mark.parametrize(("name", "build"), REFUSED)
def test_carrier_refuses_what_it_refuses(
    name: str, build: Callable[[CarrierWire], str | bytes]
) -> None:
    wire, _ = PAIRS[name]()
    with pytest.raises(CarrierRejected):
        wire.judge(build(wire))


def test_signalwire_refuses_extra_keys_and_accepts_app_dtmf() -> None:
    wire, _ = signalwire()
    assert isinstance(wire, SignalWireWire)
    sid = wire.stream_sid
    with pytest.raises(CarrierRejected, match="keys"):
        wire.judge(json.dumps({"event": "clear", "streamSid": sid, "extra": 1}))
    assert wire.judge(json.dumps({"event": "dtmf", "streamSid": sid, "dtmf": {"digit": "5"}})) == (
        AppDtmf("5")
    )


def test_telnyx_reports_refusals_with_an_error_event_the_bridge_tolerates() -> None:
    wire, stream = telnyx()
    feed(stream, wire.opening(PARAMS))
    assert not wire.closes_on_reject
    try:
        wire.judge("not json")
    except CarrierRejected as exc:
        event = wire.error_event(exc)
    assert event is not None
    notes: list[str] = []
    stream = TelnyxStream(note=notes.append)
    feed(stream, wire.opening(PARAMS))
    assert feed(stream, [event]) == []
    assert notes
    assert "error" in notes[0]


def test_telnyx_mp3_mode_drops_media_and_pcmu_leg_is_8k() -> None:
    wire = TelnyxWire(
        rate=8_000,
        codec="PCMU",
        out_codec="L16",
        out_rate=16_000,
        rtp=False,
        call_control_id="v3:abc",
        from_number="",
        to_number="",
        client_state=None,
        auth_token=None,
    )
    frame = json.dumps({"event": "media", "media": {"payload": _b64(b"\0" * 640)}})
    assert isinstance(wire.judge(frame), AppIgnored)
    stream = TelnyxStream(out_codec="L16", out_rate=16_000)
    started = feed(stream, wire.opening({}))[0]
    assert started.sample_rate == 8_000


def test_plivo_not_bidirectional_drops_play_audio_and_accepts_string_rate() -> None:
    wire = PlivoWire(
        encoding="audio/x-l16",
        rate=16_000,
        bidirectional=False,
        call_uuid="c",
        account_id="a",
        extra_headers="",
    )
    frame = {
        "event": "playAudio",
        "media": {"contentType": "audio/x-l16", "sampleRate": "16000", "payload": _b64(b"\0" * 64)},
    }
    assert isinstance(wire.judge(json.dumps(frame)), AppIgnored)
    wire.bidirectional = True
    assert wire.judge(json.dumps(frame)) == AppAudio(b"\0" * 64)
    # 8 kHz audio declared as such on a 16 kHz leg is brought to the leg's rate.
    frame["media"] = {"contentType": "audio/x-l16", "sampleRate": 8000, "payload": _b64(b"\0" * 64)}
    message = wire.judge(json.dumps(frame))
    assert isinstance(message, AppAudio)
    assert len(message.pcm16) == 128


def test_exotel_chunk_rules_are_gaps_not_refusals() -> None:
    wire, stream = exotel(8_000)
    assert isinstance(wire, ExotelWire)
    feed(stream, wire.opening({}))
    sid = wire.stream_sid

    def media(n: int) -> str:
        return json.dumps(
            {"event": "media", "stream_sid": sid, "media": {"payload": _b64(b"\0" * n)}}
        )

    assert wire.judge(media(3200)) == AppAudio(b"\0" * 3200)
    assert wire.notes == []
    wire.judge(media(640))
    wire.judge(media(3210))
    assert len(wire.notes) == 2
    assert "under 3200" in wire.notes[0]
    assert "multiple of 320" in wire.notes[1]
    with pytest.raises(CarrierRejected):
        wire.judge(media(102_400 + 320))
    # The bridge's whole chunks keep the rules; its flushed tail (padded to 320 B)
    # is the one short chunk the docs allow, at the price of a 20 ms wait.
    wire.notes.clear()
    for frame in stream.audio(b"\x01\x00" * 4000):
        wire.judge(frame)
    assert wire.notes == []
    (tail,) = stream.flush_audio()
    wire.judge(tail)
    assert wire.notes == ["gap: chunk of 1600 B is under 3200 B"]


def test_exotel_stream_url_reading() -> None:
    bare, user, password, rate, custom = read_stream_url(
        "wss://KEY:TO%40KEN@bridge.example/exotel/media?sample-rate=16000&t=abc"
    )
    assert (bare, user, password, rate, custom) == (
        "wss://bridge.example/exotel/media?sample-rate=16000&t=abc",
        "KEY",
        "TO@KEN",
        16_000,
        {"t": "abc"},
    )
    for bad in (
        "https://bridge.example/x",
        "wss://b.example/x?sample-rate=44100",
        "wss://b.example/x?a=1&b=2&c=3&d=4",
    ):
        with pytest.raises(ValueError, match=r"."):
            read_stream_url(bad)


def test_vonage_frames_are_exact_and_the_bridge_pads_its_tail() -> None:
    wire, stream = vonage()
    feed(stream, wire.opening({}))
    frames = [*stream.audio(b"\x01\x00" * 500), *stream.flush_audio()]
    assert [len(f) for f in frames] == [640, 640]
    assert all(isinstance(wire.judge(f), AppAudio) for f in frames)
    with pytest.raises(RemoteProtocolError):
        VonageStream().receive(b"\x00" * 640, 0.0)  # binary before websocket:connected
