"""The phone simulator's sans-I/O parts: wire, playback buffer, caller timeline, TwiML, routes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.simulators.phone import wire
from phonebridge.simulators.phone.playback import PlaybackBuffer
from phonebridge.simulators.phone.routes import Routes
from phonebridge.simulators.phone.script import (
    HangUp,
    SendDtmf,
    SendMedia,
    caller_timeline,
    hangup_time,
    split_frames,
)
from phonebridge.simulators.phone.twiml_reader import TwimlRejectedError, read_twiml
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.events import Dtmf, Media, Start, Stop
from phonebridge.telephony.twilio.protocol import (
    MediaStreamProtocol,
    clear_message,
    mark_message,
    media_message,
)

SID = "MZ" + "0" * 32

# ---------------------------------------------------------------- wire: what Twilio accepts


def test_accepts_exactly_what_the_bridge_builders_emit() -> None:
    assert wire.parse_app_message(media_message(SID, b"\x01\x02"), SID) == wire.AppMedia(
        b"\x01\x02"
    )
    assert wire.parse_app_message(mark_message(SID, "m"), SID) == wire.AppMark("m")
    assert wire.parse_app_message(clear_message(SID), SID) == wire.AppClear()


REJECTED = {
    "binary": (b"{}", wire.MALFORMED_MESSAGE),
    "invalid json": ("{", wire.INVALID_MESSAGE),
    "not an object": ("[]", wire.INVALID_MESSAGE),
    "unknown event": (json.dumps({"event": "play", "streamSid": SID}), wire.INVALID_MESSAGE),
    "extra top-level field": (
        json.dumps({"event": "clear", "streamSid": SID, "sequenceNumber": "1"}),
        wire.INVALID_MESSAGE,
    ),
    "extra media field": (
        json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "", "track": "x"}}),
        wire.INVALID_MESSAGE,
    ),
    "missing streamSid": (json.dumps({"event": "clear"}), wire.INVALID_MESSAGE),
    "wrong streamSid": (clear_message("MZ" + "1" * 32), wire.INVALID_MESSAGE),
    "bad base64": (
        json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "***"}}),
        wire.INVALID_MESSAGE,
    ),
    "mark name not str": (
        json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": 1}}),
        wire.INVALID_MESSAGE,
    ),
}


@pytest.mark.parametrize(("raw", "code"), REJECTED.values(), ids=REJECTED.keys())
def test_rejects_like_twilio(raw: str | bytes, code: int) -> None:
    with pytest.raises(wire.StreamRejectedError) as info:
        wire.parse_app_message(raw, SID)
    assert info.value.code == code


def test_writer_output_is_accepted_by_the_bridge_protocol() -> None:
    writer = wire.TwilioStreamWriter(SID, "AC" + "1" * 32, "CA" + "2" * 32)
    proto = MediaStreamProtocol()
    events = [
        proto.receive(writer.connected(), 0.0),
        proto.receive(writer.start({"token": "t"}), 0.0),
        proto.receive(writer.media(b"\xff" * 160, 0), 0.0),
        proto.receive(writer.media(b"\xff" * 160, 20), 0.02),
        proto.receive(writer.dtmf("5"), 0.03),
        proto.receive(writer.mark("m"), 0.03),
        proto.receive(writer.stop(), 0.04),
    ]
    start, media2, stop = events[1], events[3], events[6]
    assert isinstance(start, Start)
    assert dict(start.custom_parameters) == {"token": "t"}
    assert isinstance(media2, Media)
    assert (media2.sequence_number, media2.chunk, media2.timestamp_ms) == (3, 2, 20)
    assert isinstance(events[4], Dtmf)
    assert isinstance(stop, Stop)
    assert proto.stats(0.04).sequence_anomalies == 0
    raw = json.loads(writer.media(b"", 40))
    assert all(isinstance(raw["media"][k], str) for k in ("chunk", "timestamp"))
    assert isinstance(raw["sequenceNumber"], str)


# ---------------------------------------------------------------- playback buffer


def test_mark_is_echoed_after_the_audio_before_it_plays() -> None:
    buffer = PlaybackBuffer()
    buffer.enqueue_audio(b"\x01" * 240)
    assert buffer.enqueue_mark("m1") == []
    heard, marks = buffer.play(160)
    assert (heard, marks) == (b"\x01" * 160, [])
    heard, marks = buffer.play(160)
    assert heard == b"\x01" * 80 + b"\xff" * 80
    assert marks == ["m1"]


def test_mark_on_empty_buffer_is_echoed_at_once() -> None:
    buffer = PlaybackBuffer()
    assert buffer.enqueue_mark("now") == ["now"]


def test_mark_exactly_at_the_end_of_played_audio() -> None:
    buffer = PlaybackBuffer()
    buffer.enqueue_audio(b"\x01" * 160)
    buffer.enqueue_mark("edge")
    assert buffer.play(160) == (b"\x01" * 160, ["edge"])


def test_clear_empties_and_echoes_pending_marks_in_order() -> None:
    buffer = PlaybackBuffer()
    buffer.enqueue_audio(b"\x01" * 1600)
    buffer.enqueue_mark("a")
    buffer.enqueue_audio(b"\x02" * 1600)
    buffer.enqueue_mark("b")
    assert buffer.clear() == ["a", "b"]
    assert buffer.buffered_bytes == 0
    assert buffer.play(160) == (b"\xff" * 160, [])


def test_overflow_is_discarded() -> None:
    buffer = PlaybackBuffer(max_buffered_bytes=320)
    assert buffer.enqueue_audio(b"\x01" * 320)
    assert not buffer.enqueue_audio(b"\x01")
    assert buffer.buffered_bytes == 320


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=500), max_size=10),
    steps=st.lists(st.integers(min_value=0, max_value=700), max_size=20),
)
def test_playback_preserves_order_and_length(chunks: list[bytes], steps: list[int]) -> None:
    buffer = PlaybackBuffer()
    for chunk in chunks:
        buffer.enqueue_audio(chunk)
    heard = b"".join(buffer.play(step)[0] for step in steps)
    assert len(heard) == sum(steps)
    audio = b"".join(chunks)
    played = min(len(audio), sum(steps))
    assert heard[:played] == audio[:played]
    assert set(heard[played:]) <= {0xFF}


# ---------------------------------------------------------------- caller timeline


def test_frames_are_padded_with_line_silence() -> None:
    frames = split_frames(b"\x01" * 200)
    assert [len(f) for f in frames] == [160, 160]
    assert frames[1] == b"\x01" * 40 + b"\xff" * 120


def test_timeline_gaps_send_nothing_and_timestamps_jump() -> None:
    frames = split_frames(b"\x01" * 160 * 50)  # 1 s
    actions = list(caller_timeline(frames, end=1.0, gaps=[(0.2, 0.3)]))
    media = [a for a in actions if isinstance(a, SendMedia)]
    stamps = [m.timestamp_ms for m in media]
    assert len(media) == 50 - 15
    assert not [t for t in stamps if 200 <= t < 500]
    assert stamps[10:12] == [500, 520]
    assert actions[-1] == HangUp(at=1.0)


def test_timeline_dtmf_in_order_between_frames() -> None:
    actions = list(caller_timeline([], end=0.5, dtmf=[(0.1, "12#")]))
    presses = [(a.at, a.digit) for a in actions if isinstance(a, SendDtmf)]
    assert [d for _, d in presses] == ["1", "2", "#"]
    times = [a.at for a in actions]
    assert times == sorted(times)
    silence = [a for a in actions if isinstance(a, SendMedia)]
    assert len(silence) == 25
    assert all(m.payload == b"\xff" * 160 for m in silence)


def test_hangup_time() -> None:
    assert hangup_time(50, None, 2.0, 600.0) == pytest.approx(3.0)
    assert hangup_time(50, 0.5, 2.0, 600.0) == 0.5
    assert hangup_time(0, None, 2.0, 30.0) == 30.0
    assert hangup_time(50, 900.0, 2.0, 30.0) == 30.0


# ---------------------------------------------------------------- TwiML reading


def test_reads_connect_stream_from_the_builder() -> None:
    doc = twiml.connect_stream(
        "wss://b.example/twilio/media", "https://b.example/twilio/stream-ended", {"token": "t&"}
    )
    answer = read_twiml(doc, "application/xml")
    assert answer.stream_url == "wss://b.example/twilio/media"
    assert answer.action_url == "https://b.example/twilio/stream-ended"
    assert answer.parameters == {"token": "t&"}
    assert answer.after_connect == ()


def test_reads_say_hangup_dial_and_lingering_verbs() -> None:
    answer = read_twiml(twiml.say_and_hangup("Busy."), "text/xml; charset=utf-8")
    assert (answer.verbs, answer.said, answer.connects_stream) == (
        ("Say", "Hangup"),
        ("Busy.",),
        False,
    )
    assert read_twiml(twiml.dial("+14165550199"), "text/xml").dialled == ("+14165550199",)
    lingering = read_twiml(
        '<Response><Connect><Stream url="wss://b.example/m"/></Connect>'
        '<Pause length="60"/></Response>',
        "text/xml",
    )
    assert lingering.after_connect == ("Pause",)


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        ("<Response/>", "application/json", 12300),
        ("<Response>", "text/xml", 12100),
        ("<Other/>", "text/xml", 12100),
    ],
)
def test_twiml_twilio_would_refuse(body: str, content_type: str, code: int) -> None:
    with pytest.raises(TwimlRejectedError) as info:
        read_twiml(body, content_type)
    assert info.value.code == code


# ---------------------------------------------------------------- routes


def test_routes_sign_public_connect_local() -> None:
    routes = Routes("https://bridge.example.com", "http://127.0.0.1:8080")
    assert routes.http("https://bridge.example.com/twilio/voice") == (
        "http://127.0.0.1:8080/twilio/voice"
    )
    assert routes.http("https://other.example/x") == "https://other.example/x"
    assert routes.websocket("wss://bridge.example.com/twilio/media") == (
        "ws://127.0.0.1:8080/twilio/media"
    )
    # A host that merely starts with the public host is not rebased.
    assert routes.http("https://bridge.example.com.evil/x") == "https://bridge.example.com.evil/x"


def test_connect_override_base_or_full_url() -> None:
    base = Routes("https://b.example", "http://127.0.0.1:1", "ws://127.0.0.1:9")
    assert base.websocket("wss://b.example/twilio/media") == "ws://127.0.0.1:9/twilio/media"
    full = Routes("https://b.example", "http://127.0.0.1:1", "ws://127.0.0.1:9/elsewhere")
    assert full.websocket("wss://b.example/twilio/media") == "ws://127.0.0.1:9/elsewhere"
