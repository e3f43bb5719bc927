"""The five carriers' sans-I/O stream protocols (CARRIERS.md §1-§5, §8)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.telephony.exotel.protocol import ExotelStream, chunk_bytes
from phonebridge.telephony.plivo.protocol import PlivoStream, parse_extra_headers
from phonebridge.telephony.signalwire.protocol import SignalWireStream
from phonebridge.telephony.stream import (
    CallerAudio,
    CarrierStream,
    DigitPressed,
    MarkPlayed,
    PlaybackCleared,
    StreamEnded,
    StreamStarted,
    StreamState,
)
from phonebridge.telephony.telnyx.protocol import TelnyxStream
from phonebridge.telephony.vonage.protocol import VonageStream

SAMPLES: dict[str, dict[str, dict[str, Any]]] = json.loads(
    (Path(__file__).parent / "carrier_stream_samples.json").read_text()
)
STREAMS: dict[str, type[CarrierStream]] = {
    "telnyx": TelnyxStream,
    "plivo": PlivoStream,
    "vonage": VonageStream,
    "signalwire": SignalWireStream,
    "exotel": ExotelStream,
}
START_KIND = {"vonage": "websocket:connected", "plivo": "start"}


def frame(carrier: str, kind: str, **changes: Any) -> str:
    doc = copy.deepcopy(SAMPLES[carrier][kind])
    doc.update(changes)
    return json.dumps(doc)


def started(carrier: str, notes: list[str] | None = None) -> CarrierStream:
    stream = STREAMS[carrier](note=notes.append if notes is not None else None)
    if "connected" in SAMPLES[carrier]:
        assert stream.receive(frame(carrier, "connected"), 0.0) == []
    [event] = stream.receive(frame(carrier, START_KIND.get(carrier, "start")), 0.0)
    assert isinstance(event, StreamStarted)
    return stream


def tone(rate: int, freq: float, ms: int) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes()


# --------------------------------------------------------------------------- start


@pytest.mark.parametrize("carrier", sorted(STREAMS))
def test_start_binds_identity_rate_and_parameters(carrier: str) -> None:
    stream = started(carrier)
    assert stream.state is StreamState.STREAMING
    assert stream.started is not None
    assert stream.sample_rate == 16_000
    assert stream.started.parameters["token"] == "t0k"
    assert stream.started.stream_id


def test_vonage_numbers_become_e164_and_headers_are_parameters() -> None:
    stream = started("vonage")
    assert stream.started is not None
    assert stream.started.from_number == "+447700900000"
    assert stream.started.to_number == "+442079460000"
    assert stream.started.call_id == "u-1"


def test_plivo_extra_headers_split_on_comma_and_semicolon() -> None:
    assert parse_extra_headers("a=1,b=2") == {"a": "1", "b": "2"}
    assert parse_extra_headers("a=1;b=2; c=3") == {"a": "1", "b": "2", "c": "3"}
    assert parse_extra_headers("junk,=x,a=") == {"a": ""}


@pytest.mark.parametrize("carrier", sorted(STREAMS))
def test_second_start_is_an_error(carrier: str) -> None:
    stream = started(carrier)
    with pytest.raises(RemoteProtocolError):
        stream.receive(frame(carrier, START_KIND.get(carrier, "start")), 0.0)
    assert stream.state is StreamState.FAILED
    with pytest.raises(LocalProtocolError):
        stream.receive(frame(carrier, START_KIND.get(carrier, "start")), 0.0)


@pytest.mark.parametrize(
    ("carrier", "kind"),
    [("telnyx", "media"), ("plivo", "media"), ("signalwire", "media"), ("exotel", "media")],
)
def test_media_before_start_is_an_error(carrier: str, kind: str) -> None:
    with pytest.raises(RemoteProtocolError, match="before the stream started"):
        STREAMS[carrier]().receive(frame(carrier, kind), 0.0)


def test_vonage_binary_before_connected_is_an_error() -> None:
    with pytest.raises(RemoteProtocolError):
        VonageStream().receive(b"\x00" * 640, 0.0)


@pytest.mark.parametrize(
    ("carrier", "path", "value"),
    [
        ("telnyx", ("start", "media_format", "encoding"), "G722"),
        ("telnyx", ("start", "media_format", "sample_rate"), 44100),
        ("telnyx", ("start", "media_format", "channels"), 2),
        ("plivo", ("start", "mediaFormat", "sampleRate"), 24000),
        ("plivo", ("start", "mediaFormat", "encoding"), "audio/x-opus"),
        ("signalwire", ("start", "mediaFormat", "encoding"), "audio/x-mulaw"),
        ("exotel", ("start", "media_format", "bit_rate"), "8"),
        ("exotel", ("start", "media_format", "sample_rate"), "11025"),
    ],
)
def test_unusable_formats_are_refused_at_start(
    carrier: str, path: tuple[str, ...], value: object
) -> None:
    doc = copy.deepcopy(SAMPLES[carrier]["start"])
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(RemoteProtocolError):
        STREAMS[carrier]().receive(json.dumps(doc), 0.0)


# --------------------------------------------------------------------------- audio in


def test_telnyx_l16_is_big_endian_on_the_wire() -> None:
    stream = started("telnyx")
    wire = np.array([1, -2, 300], dtype=">i2").tobytes()
    media = copy.deepcopy(SAMPLES["telnyx"]["media"])
    media["media"]["payload"] = base64.b64encode(wire).decode()
    [event] = stream.receive(json.dumps(media), 0.0)
    assert isinstance(event, CallerAudio)
    assert np.frombuffer(event.pcm16, "<i2").tolist() == [1, -2, 300]


def test_telnyx_pcmu_leg_is_8k_and_app_audio_is_upsampled_to_the_asked_rate() -> None:
    stream = TelnyxStream(out_rate=16_000)
    start = copy.deepcopy(SAMPLES["telnyx"]["start"])
    start["start"]["media_format"] = {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}
    stream.receive(json.dumps(start), 0.0)
    assert stream.sample_rate == 8_000
    media = copy.deepcopy(SAMPLES["telnyx"]["media"])
    media["media"]["payload"] = base64.b64encode(b"\xff" * 160).decode()  # mu-law silence
    [event] = stream.receive(json.dumps(media), 0.0)
    assert isinstance(event, CallerAudio)
    assert event.pcm16 == b"\x00\x00" * 160
    [out] = stream.audio(b"\x01\x00" * 160)  # 20 ms at 8 kHz → 20 ms at 16 kHz
    payload = base64.b64decode(json.loads(out)["media"]["payload"])
    assert len(payload) == 640
    assert set(np.frombuffer(payload, ">i2").tolist()) <= {0, 1}


def test_telnyx_outbound_track_is_never_fed_back() -> None:
    notes: list[str] = []
    stream = started("telnyx", notes)
    media = copy.deepcopy(SAMPLES["telnyx"]["media"])
    media["media"]["track"] = "outbound"
    assert stream.receive(json.dumps(media), 0.0) == []
    assert stream.receive(json.dumps(media), 0.0) == []
    assert len(notes) == 1


def test_vonage_binary_frames_are_audio_and_odd_sizes_are_noted() -> None:
    notes: list[str] = []
    stream = started("vonage", notes)
    [event] = stream.receive(b"\x02\x00" * 320, 0.0)
    assert event == CallerAudio(b"\x02\x00" * 320, 16_000)
    assert notes == []
    stream.receive(b"\x00" * 100, 0.0)
    assert len(notes) == 1
    with pytest.raises(RemoteProtocolError):
        stream.receive(b"\x00" * 101, 0.0)


def test_plivo_mulaw_stream_is_decoded() -> None:
    start = copy.deepcopy(SAMPLES["plivo"]["start"])
    start["start"]["mediaFormat"] = {"encoding": "audio/x-mulaw", "sampleRate": 8000}
    stream = PlivoStream()
    stream.receive(json.dumps(start), 0.0)
    media = copy.deepcopy(SAMPLES["plivo"]["media"])
    media["media"]["payload"] = base64.b64encode(b"\xff" * 160).decode()
    [event] = stream.receive(json.dumps(media), 0.0)
    assert event == CallerAudio(b"\x00\x00" * 160, 8_000)


def test_signalwire_l16_byte_order_is_a_setting_and_noted() -> None:
    notes: list[str] = []
    little = started("signalwire", notes)
    assert any("byte order" in note for note in notes)
    big = SignalWireStream(l16_big_endian=True)
    big.receive(frame("signalwire", "start"), 0.0)
    media = copy.deepcopy(SAMPLES["signalwire"]["media"])
    media["media"]["payload"] = base64.b64encode(b"\x01\x02").decode()
    [a] = little.receive(json.dumps(media), 0.0)
    [b] = big.receive(json.dumps(media), 0.0)
    assert isinstance(a, CallerAudio)
    assert isinstance(b, CallerAudio)
    assert (a.pcm16, b.pcm16) == (b"\x01\x02", b"\x02\x01")


# --------------------------------------------------------------------------- dtmf, marks, end


@pytest.mark.parametrize(
    ("carrier", "kind", "expected"),
    [
        ("telnyx", "dtmf", DigitPressed("5", None)),
        ("plivo", "dtmf", DigitPressed("7", None)),
        ("vonage", "websocket:dtmf", DigitPressed("5", 260)),
        ("signalwire", "dtmf", DigitPressed("1", 250)),
        ("exotel", "dtmf", DigitPressed("#", 200)),
        ("telnyx", "mark", MarkPlayed("m1")),
        ("plivo", "playedStream", MarkPlayed("m1")),
        ("vonage", "websocket:notify", MarkPlayed("m1")),
        ("signalwire", "mark", MarkPlayed("m1")),
        ("exotel", "mark", MarkPlayed("m1")),
        ("plivo", "clearedAudio", PlaybackCleared()),
        ("vonage", "websocket:cleared", PlaybackCleared()),
    ],
)
def test_dtmf_and_marks(carrier: str, kind: str, expected: object) -> None:
    stream = started(carrier)
    assert stream.receive(frame(carrier, kind), 0.0) == [expected]


@pytest.mark.parametrize(
    ("carrier", "reason"), [("telnyx", "stop"), ("signalwire", "stop"), ("exotel", "callended")]
)
def test_stop_ends_and_later_frames_are_ignored(carrier: str, reason: str) -> None:
    stream = started(carrier)
    assert stream.receive(frame(carrier, "stop"), 0.0) == [StreamEnded(reason)]
    assert stream.state is StreamState.ENDED
    assert stream.receive(frame(carrier, "media"), 0.0) == []
    assert stream.receive(frame(carrier, "stop"), 0.0) == []
    assert stream.stats().ignored_after_end == 2


@pytest.mark.parametrize("carrier", ["plivo", "vonage"])
def test_socket_close_is_the_end_where_there_is_no_stop(carrier: str) -> None:
    stream = started(carrier)
    assert stream.socket_closed() == [StreamEnded("socket closed")]
    assert stream.socket_closed() == []


def test_plivo_undocumented_stop_is_honoured_and_noted() -> None:
    notes: list[str] = []
    stream = started("plivo", notes)
    assert stream.receive('{"event":"stop","reason":"hangup"}', 0.0) == [StreamEnded("hangup")]
    assert notes
    assert "undocumented" in notes[0]


@pytest.mark.parametrize("carrier", sorted(STREAMS))
def test_unknown_events_are_skipped_and_noted_once(carrier: str) -> None:
    notes: list[str] = []
    stream = started(carrier, notes)
    before, unknown_before = len(notes), stream.stats().unknown
    for _ in range(3):
        assert stream.receive('{"event":"brand-new","x":1}', 0.0) == []
    assert len(notes) == before + 1
    assert "brand-new" in notes[-1]
    assert stream.stats().unknown == unknown_before + 3
    assert stream.state is StreamState.STREAMING


@pytest.mark.parametrize(
    ("carrier", "bad"),
    [
        ("telnyx", '{"event":"dtmf","dtmf":{"digit":"55"}}'),
        ("telnyx", '{"event":"mark","mark":{}}'),
        ("plivo", '{"event":"playedStream"}'),
        ("plivo", '{"event":"media","media":{"payload":"!!"}}'),
        ("vonage", '{"event":"websocket:dtmf","digit":5}'),
        ("signalwire", '{"event":"media","streamSid":"MZ-other","media":{"payload":""}}'),
        ("exotel", '{"event":"media","stream_sid":"other","media":{"payload":""}}'),
        ("exotel", '{"event":"media","media":{"payload":"AA=="}}'),
        ("telnyx", "[1,2]"),
        ("plivo", '{"event":7}'),
        ("signalwire", "not json"),
        ("exotel", b"\x00\x01"),
    ],
)
def test_malformed_frames_are_remote_errors(carrier: str, bad: str | bytes) -> None:
    stream = started(carrier)
    with pytest.raises(RemoteProtocolError):
        stream.receive(bad, 0.0)
    assert stream.state is StreamState.FAILED


def test_exotel_accepts_camel_case_and_answers_in_it() -> None:
    notes: list[str] = []
    stream = ExotelStream(note=notes.append)
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "st9",
        "start": {
            "streamSid": "st9",
            "callSid": "ca9",
            "customParameters": {"token": "x"},
            "mediaFormat": {"encoding": "audio/x-raw", "sampleRate": "8000", "bitRate": "16"},
        },
    }
    [event] = stream.receive(json.dumps(start), 0.0)
    assert isinstance(event, StreamStarted)
    assert (event.stream_id, event.call_id, event.sample_rate) == ("st9", "ca9", 8_000)
    assert event.parameters == {"token": "x"}
    assert any("camelCase" in n for n in notes)
    assert json.loads(stream.clear()[0]) == {"event": "clear", "streamSid": "st9"}


# --------------------------------------------------------------------------- outbound


def test_vonage_sends_exact_20ms_binary_frames_and_pads_the_tail() -> None:
    stream = started("vonage")
    frames = stream.audio(b"\x01\x00" * 500)  # 31.25 ms at 16 kHz
    assert frames == [b"\x01\x00" * 320]
    frames = stream.mark("m2")
    assert frames[0] == b"\x01\x00" * 180 + b"\x00" * 280
    assert json.loads(frames[1]) == {"action": "notify", "payload": {"name": "m2"}}
    stream.audio(b"\x01\x00" * 10)
    assert stream.clear() == ['{"action":"clear"}']
    assert stream.flush_audio() == []


@pytest.mark.parametrize(("rate", "size"), [(8_000, 3_200), (16_000, 3_200), (24_000, 4_800)])
def test_exotel_chunks_are_320_multiples_of_at_least_3200(rate: int, size: int) -> None:
    assert chunk_bytes(rate) == size
    stream = ExotelStream()
    start = copy.deepcopy(SAMPLES["exotel"]["start"])
    start["start"]["media_format"]["sample_rate"] = str(rate)
    stream.receive(json.dumps(start), 0.0)
    frames = stream.audio(b"\x05\x00" * (size // 2 + 10))
    assert len(frames) == 1
    first = json.loads(frames[0])
    assert first["stream_sid"] == "st1"
    assert len(base64.b64decode(first["media"]["payload"])) == size
    assert stream.audio(b"") == []
    [tail, mark] = stream.mark("end")
    payload = base64.b64decode(json.loads(tail)["media"]["payload"])
    assert len(payload) == 320
    assert payload[:20] == b"\x05\x00" * 10
    assert payload[20:] == b"\x00" * 300
    assert json.loads(mark) == {"event": "mark", "stream_sid": "st1", "mark": {"name": "end"}}


def test_telnyx_outbound_is_big_endian_at_least_20ms_without_stream_id() -> None:
    stream = started("telnyx")
    assert stream.audio(b"\x01\x00" * 100) == []  # 6.25 ms held
    [out] = stream.audio(b"\x01\x00" * 300)
    doc = json.loads(out)
    assert set(doc) == {"event", "media"}
    payload = base64.b64decode(doc["media"]["payload"])
    assert payload == b"\x00\x01" * 400
    assert stream.mark("m")[-1] == '{"event":"mark","mark":{"name":"m"}}'
    assert stream.clear() == ['{"event":"clear"}']


def test_plivo_play_audio_declares_content_type_and_rate() -> None:
    stream = started("plivo")
    [out] = stream.audio(b"\x01\x00" * 320)
    doc = json.loads(out)
    assert doc["event"] == "playAudio"
    assert doc["media"]["contentType"] == "audio/x-l16"
    assert doc["media"]["sampleRate"] == 16_000
    assert base64.b64decode(doc["media"]["payload"]) == b"\x01\x00" * 320
    assert json.loads(stream.mark("m1")[0]) == {
        "event": "checkpoint",
        "streamId": "s1",
        "name": "m1",
    }
    assert json.loads(stream.clear()[0]) == {"event": "clearAudio", "streamId": "s1"}
    assert json.loads(PlivoStream.send_dtmf("12#")) == {"event": "sendDTMF", "dtmf": "12#"}
    with pytest.raises(LocalProtocolError):
        PlivoStream.send_dtmf("x")


def test_signalwire_outbound_is_twilio_shaped_with_dtmf() -> None:
    stream = started("signalwire")
    assert isinstance(stream, SignalWireStream)
    doc = json.loads(stream.audio(b"\x01\x00" * 4)[0])
    assert doc == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": base64.b64encode(b"\x01\x00" * 4).decode()},
    }
    assert json.loads(stream.dtmf("9")) == {
        "event": "dtmf",
        "streamSid": "MZ1",
        "dtmf": {"digit": "9"},
    }


@pytest.mark.parametrize("carrier", sorted(STREAMS))
def test_a_6khz_tone_survives_a_16k_leg_both_ways(carrier: str) -> None:
    """Nothing in a carrier's wideband path low-passes or mangles the audio."""
    stream = started(carrier)
    sent = tone(16_000, 6_000, 100)
    frames = [*stream.audio(sent), *stream.flush_audio()]
    wire = b""
    for out in frames:
        if isinstance(out, bytes):
            wire += out
            continue
        media = json.loads(out)["media"]
        raw = base64.b64decode(media["payload"])
        wire += np.frombuffer(raw, ">i2").astype("<i2").tobytes() if carrier == "telnyx" else raw
    assert wire[: len(sent)] == sent
