"""Fuzzing the five carriers' stream parsers and socket state (CARRIERS.md §1-§5).

Like tests/fuzz/test_fuzz_twilio.py: raw JSON text spliced into valid
messages, truncated and flipped frames, binary frames, and whole sequences of
frames on one socket. The property: every frame gives a list of events or a
:class:`RemoteProtocolError` (after which the stream is FAILED); never any
other exception, which would kill the call task instead of ending the call.
Audio handed on is always even-length PCM16 at the leg's rate, and outbound
framing rules hold for any sequence of app audio.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.exotel.protocol import ALIGN, MIN_CHUNK, ExotelStream
from phonebridge.telephony.plivo.protocol import PlivoStream
from phonebridge.telephony.signalwire.protocol import SignalWireStream
from phonebridge.telephony.stream import CallerAudio, CarrierStream, StreamStarted, StreamState
from phonebridge.telephony.telnyx.protocol import TelnyxStream
from phonebridge.telephony.vonage.protocol import VonageStream

from .hostile import FUZZ_SETTINGS, deep_json, raw_json_replacements

SAMPLES: dict[str, dict[str, dict[str, Any]]] = json.loads(
    (Path(__file__).parents[1] / "telephony" / "carrier_stream_samples.json").read_text()
)
STREAMS: dict[str, type[CarrierStream]] = {
    "telnyx": TelnyxStream,
    "plivo": PlivoStream,
    "vonage": VonageStream,
    "signalwire": SignalWireStream,
    "exotel": ExotelStream,
}
CARRIERS = sorted(STREAMS)
HOLE = "\x00hole\x00"


def _slots(doc: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    found: list[tuple[dict[str, Any], str]] = []
    for key, child in doc.items():
        found.append((doc, key))
        if isinstance(child, dict):
            found += _slots(child)
    return found


def spliced(carrier: str, kind_index: int, slot: int, raw_value: str) -> str:
    kinds = sorted(SAMPLES[carrier])
    doc = copy.deepcopy(SAMPLES[carrier][kinds[kind_index % len(kinds)]])
    slots = _slots(doc)
    parent, key = slots[slot % len(slots)]
    parent[key] = HOLE
    return json.dumps(doc).replace(json.dumps(HOLE), raw_value, 1)


def feed(stream: CarrierStream, frames: list[str | bytes]) -> None:
    before = stream.stats().messages
    for step, frame in enumerate(frames):
        try:
            events = stream.receive(frame, step * 0.02)
        except RemoteProtocolError:
            assert stream.state is StreamState.FAILED
            return
        for event in events:
            if isinstance(event, CallerAudio):
                assert len(event.pcm16) % 2 == 0
                assert event.sample_rate == stream.sample_rate
            if isinstance(event, StreamStarted):
                assert stream.state in (StreamState.STREAMING, StreamState.ENDED)
        assert stream.stats().messages == before + step + 1
    stream.stats()
    stream.socket_closed()


def valid_frames(carrier: str) -> st.SearchStrategy[str | bytes]:
    texts: st.SearchStrategy[str | bytes] = st.sampled_from(
        [json.dumps(doc) for doc in SAMPLES[carrier].values()]
    )
    if carrier == "vonage":
        return texts | st.binary(max_size=700)
    return texts


@settings(**FUZZ_SETTINGS)
@given(
    carrier=st.sampled_from(CARRIERS),
    kind=st.integers(0, 10),
    slot=st.integers(0, 40),
    raw=raw_json_replacements(),
)
def test_spliced_raw_json_after_a_valid_start(carrier: str, kind: int, slot: int, raw: str) -> None:
    stream = STREAMS[carrier]()
    start_kind = {"vonage": "websocket:connected"}.get(carrier, "start")
    stream.receive(json.dumps(SAMPLES[carrier][start_kind]), 0.0)
    feed(stream, [spliced(carrier, kind, slot, raw)])


@settings(**FUZZ_SETTINGS)
@given(carrier=st.sampled_from(CARRIERS), data=st.data())
def test_truncated_flipped_and_binary_frames(carrier: str, data: st.DataObject) -> None:
    kinds = sorted(SAMPLES[carrier])
    text = json.dumps(SAMPLES[carrier][data.draw(st.sampled_from(kinds))])
    cut = data.draw(st.integers(0, len(text)))
    at = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.characters())
    for frame in (text[:cut], text[:at] + char + text[at + 1 :], text.encode(), b"\xff" + b"x"):
        feed(STREAMS[carrier](), [frame])


def test_decoder_limits_are_remote_errors() -> None:
    for carrier in CARRIERS:
        start = {"vonage": "websocket:connected"}.get(carrier, "start")
        for frame in (
            deep_json(10_000),
            "x" * 300_000,
            "\ud800",
            json.dumps({"event": start, "start": 1, "content-type": 1}),
        ):
            stream = STREAMS[carrier]()
            try:
                stream.receive(frame, 0.0)
            except RemoteProtocolError:
                continue
            raise AssertionError(f"{carrier} accepted {frame[:40]!r}")


@settings(**FUZZ_SETTINGS)
@given(carrier=st.sampled_from(CARRIERS), data=st.data())
def test_any_sequence_of_frames_on_one_socket(carrier: str, data: st.DataObject) -> None:
    hostile = (
        valid_frames(carrier)
        | st.builds(
            spliced,
            st.just(carrier),
            st.integers(0, 10),
            st.integers(0, 40),
            raw_json_replacements(),
        )
        | st.text(max_size=40)
        | st.binary(max_size=40)
    )
    feed(STREAMS[carrier](), data.draw(st.lists(hostile, max_size=12)))


@settings(**FUZZ_SETTINGS)
@given(
    carrier=st.sampled_from(CARRIERS),
    pieces=st.lists(st.integers(0, 2_000).map(lambda n: b"\x01\x00" * n), max_size=8),
    marks=st.lists(st.booleans(), max_size=8),
)
def test_outbound_framing_rules_hold_for_any_app_audio(
    carrier: str, pieces: list[bytes], marks: list[bool]
) -> None:
    stream = STREAMS[carrier]()
    start_kind = {"vonage": "websocket:connected"}.get(carrier, "start")
    stream.receive(json.dumps(SAMPLES[carrier][start_kind]), 0.0)
    frames: list[str | bytes] = []
    for index, piece in enumerate(pieces):
        frames += stream.audio(piece)
        if index < len(marks) and marks[index]:
            frames += stream.mark(f"m{index}")
    frames += stream.flush_audio()
    for index, frame in enumerate(frames):
        if carrier == "vonage" and isinstance(frame, bytes):
            assert len(frame) == 640  # exactly one 20 ms frame at 16 kHz
        elif carrier == "exotel":
            doc = json.loads(frame)
            if doc["event"] == "media":
                size = len(base64.b64decode(doc["media"]["payload"]))
                assert size % ALIGN == 0
                # A short chunk is only ever the padded tail before a mark or the end.
                if size < MIN_CHUNK:
                    assert (
                        index == len(frames) - 1 or json.loads(frames[index + 1])["event"] == "mark"
                    )
        else:
            assert isinstance(frame, str)
            json.loads(frame)
