"""Parsing and order enforcement of Twilio Media Streams messages (PROTOCOLS.md §1.2, §1.3)."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.telephony.twilio.events import Connected, Dtmf, Mark, Media, Start, Stop
from phonebridge.telephony.twilio.protocol import (
    MAX_MEDIA_PAYLOAD_BYTES,
    MAX_MESSAGE_CHARS,
    MediaStreamProtocol,
    StreamState,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)

SAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "twilio_stream_samples.json").read_text()
)
SID = SAMPLES["start"]["streamSid"]


def wire(kind: str, **patch: Any) -> str:
    doc = copy.deepcopy(SAMPLES[kind])
    doc.update(patch)
    return json.dumps(doc)


# ---------------------------------------------------------------- parse: every kind


def test_parse_connected() -> None:
    assert parse_message(wire("connected")) == Connected(protocol="Call", version="1.0.0")


def test_parse_start() -> None:
    event = parse_message(wire("start"))
    assert isinstance(event, Start)
    assert event.sequence_number == 1
    assert event.stream_sid == SID
    assert event.call_sid == "CA0123456789abcdef0123456789abcdef"
    assert event.account_sid == "AC0123456789abcdef0123456789abcdef"
    assert event.tracks == ("inbound",)
    assert dict(event.custom_parameters) == SAMPLES["start"]["start"]["customParameters"]
    assert (event.encoding, event.sample_rate, event.channels) == ("audio/x-mulaw", 8000, 1)
    with pytest.raises(TypeError):
        event.custom_parameters["x"] = "y"  # type: ignore[index]


def test_parse_start_without_custom_parameters_is_empty() -> None:
    doc = copy.deepcopy(SAMPLES["start"])
    del doc["start"]["customParameters"]
    event = parse_message(json.dumps(doc))
    assert isinstance(event, Start)
    assert dict(event.custom_parameters) == {}


def test_parse_media_decodes_payload_and_wire_numbers() -> None:
    event = parse_message(wire("media"))
    assert event == Media(
        sequence_number=2,
        stream_sid=SID,
        track="inbound",
        chunk=1,
        timestamp_ms=5,
        payload=b"\xff" * 16,
    )


def test_parse_dtmf_mark_stop() -> None:
    assert parse_message(wire("dtmf")) == Dtmf(3, SID, "inbound_track", "1")
    assert parse_message(wire("mark")) == Mark(4, SID, "reply-1")
    assert parse_message(wire("stop")) == Stop(
        5, SID, "AC0123456789abcdef0123456789abcdef", "CA0123456789abcdef0123456789abcdef"
    )


def test_parse_ignores_extra_fields() -> None:
    doc = copy.deepcopy(SAMPLES["media"])
    doc["newField"] = {"x": 1}
    doc["media"]["also"] = "new"
    assert isinstance(parse_message(json.dumps(doc)), Media)


# ---------------------------------------------------------------- parse: malformed


def _without(kind: str, *path: str) -> str:
    doc = copy.deepcopy(SAMPLES[kind])
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return json.dumps(doc)


def _with(kind: str, value: Any, *path: str) -> str:
    doc = copy.deepcopy(SAMPLES[kind])
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(doc)


MALFORMED = {
    "binary frame": wire("media").encode(),
    "invalid json": '{"event": "media",',
    "json array": "[1, 2]",
    "json string": '"media"',
    "unknown event": wire("connected", event="hello"),
    "event not a string": wire("connected", event=3),
    "no event": json.dumps({"protocol": "Call"}),
    "sequenceNumber as int": _with("media", 2, "sequenceNumber"),
    "sequenceNumber negative": _with("media", "-2", "sequenceNumber"),
    "sequenceNumber unicode digit": _with("media", "²", "sequenceNumber"),
    "sequenceNumber missing": _without("media", "sequenceNumber"),
    "chunk as int": _with("media", 1, "media", "chunk"),
    "timestamp as float string": _with("media", "5.0", "media", "timestamp"),
    "timestamp missing": _without("media", "media", "timestamp"),
    "payload missing": _without("media", "media", "payload"),
    "payload not base64": _with("media", "!!!!", "media", "payload"),
    "payload bad padding": _with("media", "//8", "media", "payload"),
    "payload with newline": _with("media", "////\n////", "media", "payload"),
    "payload oversize": _with(
        "media",
        base64.b64encode(b"\xff" * (MAX_MEDIA_PAYLOAD_BYTES + 3)).decode(),
        "media",
        "payload",
    ),
    "media not an object": _with("media", "x", "media"),
    "media streamSid missing": _without("media", "streamSid"),
    "start streamSid mismatch": _with("start", "MZother", "streamSid"),
    "start tracks not list": _with("start", "inbound", "start", "tracks"),
    "start custom param not str": _with("start", {"a": 1}, "start", "customParameters"),
    "start sampleRate string": _with("start", "8000", "start", "mediaFormat", "sampleRate"),
    "start channels bool": _with("start", True, "start", "mediaFormat", "channels"),
    "start mediaFormat missing": _without("start", "start", "mediaFormat"),
    "dtmf empty digit": _with("dtmf", "", "dtmf", "digit"),
    "mark name missing": _without("mark", "mark", "name"),
    "stop callSid missing": _without("stop", "stop", "callSid"),
    "connected version int": _with("connected", 1, "version"),
    "too long": " " * (MAX_MESSAGE_CHARS + 1),
    "deep nesting": "[" * 100_000,
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_raises_remote_protocol_error(raw: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_message(raw)


def test_error_messages_say_what_is_wrong() -> None:
    with pytest.raises(RemoteProtocolError, match="binary"):
        parse_message(b"\x00")
    with pytest.raises(RemoteProtocolError, match=r"media\.chunk must be a decimal string"):
        parse_message(_with("media", "x", "media", "chunk"))
    with pytest.raises(RemoteProtocolError, match="missing 'payload'"):
        parse_message(_without("media", "media", "payload"))


def test_largest_allowed_payload_parses() -> None:
    raw = _with(
        "media", base64.b64encode(b"\x7f" * MAX_MEDIA_PAYLOAD_BYTES).decode(), "media", "payload"
    )
    event = parse_message(raw)
    assert isinstance(event, Media)
    assert len(event.payload) == MAX_MEDIA_PAYLOAD_BYTES


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )


@given(st.text() | st.binary())
def test_fuzz_any_frame_is_event_or_remote_error(raw: str | bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_message(raw)


@given(
    kind=st.sampled_from(sorted(SAMPLES)),
    path_choice=st.integers(min_value=0, max_value=50),
    value=_json_values(),
)
def test_fuzz_mutated_samples_are_event_or_remote_error(
    kind: str, path_choice: int, value: Any
) -> None:
    doc = copy.deepcopy(SAMPLES[kind])
    # Replace one field somewhere in the (nested) sample with an arbitrary JSON value.
    slots: list[tuple[dict[str, Any], str]] = []

    def collect(node: dict[str, Any]) -> None:
        for key, child in node.items():
            slots.append((node, key))
            if isinstance(child, dict):
                collect(child)

    collect(doc)
    parent, key = slots[path_choice % len(slots)]
    parent[key] = value
    with contextlib.suppress(RemoteProtocolError):
        parse_message(json.dumps(doc))


# ---------------------------------------------------------------- order and identity


def run(proto: MediaStreamProtocol, *kinds: str, now: float = 0.0) -> list[Any]:
    return [proto.receive(wire(kind), now) for kind in kinds]


def test_happy_path_order() -> None:
    proto = MediaStreamProtocol()
    events = run(proto, "connected", "start", "media", "dtmf", "mark", "stop")
    assert [type(e) for e in events] == [Connected, Start, Media, Dtmf, Mark, Stop]
    assert proto.state is StreamState.STOPPED
    assert proto.stream_sid == SID
    stats = proto.stats(0.0)
    assert (stats.media_frames, stats.media_bytes, stats.dtmf_digits, stats.marks) == (1, 16, 1, 1)
    assert stats.saw_connected
    assert stats.sequence_anomalies == 0


def test_missing_connected_is_tolerated_and_reported() -> None:
    proto = MediaStreamProtocol()
    run(proto, "start", "media")
    assert not proto.stats(0.0).saw_connected
    assert proto.state is StreamState.STREAMING


@pytest.mark.parametrize(
    "kinds",
    [
        ("connected", "media"),
        ("connected", "dtmf"),
        ("connected", "mark"),
        ("connected", "stop"),
        ("connected", "start", "start"),
        ("connected", "connected"),
        ("start", "connected"),
    ],
)
def test_out_of_order_is_remote_error(kinds: tuple[str, ...]) -> None:
    proto = MediaStreamProtocol()
    with pytest.raises(RemoteProtocolError):
        run(proto, *kinds)
    assert proto.state is StreamState.FAILED


def test_receive_after_failure_is_local_misuse() -> None:
    proto = MediaStreamProtocol()
    with pytest.raises(RemoteProtocolError):
        run(proto, "media")
    with pytest.raises(LocalProtocolError):
        run(proto, "start")


def test_wrong_stream_sid_is_remote_error() -> None:
    proto = MediaStreamProtocol()
    run(proto, "connected", "start")
    with pytest.raises(RemoteProtocolError, match="not the active"):
        proto.receive(wire("media", streamSid="MZ00000000000000000000000000000000"), 0.0)


def test_unsupported_media_format_is_remote_error() -> None:
    proto = MediaStreamProtocol()
    with pytest.raises(RemoteProtocolError, match="unsupported media format"):
        proto.receive(_with("start", 16000, "start", "mediaFormat", "sampleRate"), 0.0)


def test_second_stop_is_ignored_and_counted() -> None:
    proto = MediaStreamProtocol()
    assert run(proto, "start", "stop", "stop", "media")[1:] == [Stop(**_stop_fields()), None, None]
    stats = proto.stats(0.0)
    assert stats.duplicate_stops == 1
    assert stats.ignored_after_stop == 1
    assert proto.state is StreamState.STOPPED


def _stop_fields() -> dict[str, Any]:
    return {
        "sequence_number": 5,
        "stream_sid": SID,
        "account_sid": "AC0123456789abcdef0123456789abcdef",
        "call_sid": "CA0123456789abcdef0123456789abcdef",
    }


def test_sequence_anomalies_are_counted_not_fatal() -> None:
    proto = MediaStreamProtocol()
    run(proto, "start")  # sequence 1
    proto.receive(wire("media", sequenceNumber="2"), 0.0)
    proto.receive(wire("media", sequenceNumber="7"), 0.0)
    proto.receive(wire("media", sequenceNumber="3"), 0.0)
    assert proto.stats(0.0).sequence_anomalies == 2


def test_audio_lead_shows_a_flood_and_not_a_paced_stream() -> None:
    frame = base64.b64encode(b"\xff" * 160).decode()
    paced = MediaStreamProtocol()
    flooded = MediaStreamProtocol()
    run(paced, "start")
    run(flooded, "start")
    for i in range(100):
        raw = _with("media", frame, "media", "payload")
        paced.receive(raw, i * 0.02)
        flooded.receive(raw, 0.0)
    assert paced.stats(2.0).max_audio_lead_ms == pytest.approx(20.0)
    assert flooded.stats(0.0).max_audio_lead_ms == pytest.approx(2000.0)
    # Lead decays as wall time passes without audio.
    assert flooded.stats(2.0).audio_lead_ms == pytest.approx(0.0)


# ---------------------------------------------------------------- outbound builders


def test_media_message_is_exactly_the_documented_shape() -> None:
    text = media_message(SID, b"\x00\xff\x7f")
    assert json.loads(text) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": base64.b64encode(b"\x00\xff\x7f").decode()},
    }


def test_mark_and_clear_messages_are_exactly_the_documented_shape() -> None:
    assert json.loads(mark_message(SID, "m1")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "m1"},
    }
    assert json.loads(clear_message(SID)) == {"event": "clear", "streamSid": SID}


@given(sid=st.text(), name=st.text(), payload=st.binary(max_size=400))
def test_builders_escape_any_text(sid: str, name: str, payload: bytes) -> None:
    assert json.loads(media_message(sid, payload))["media"]["payload"] == (
        base64.b64encode(payload).decode()
    )
    assert json.loads(media_message(sid, payload))["streamSid"] == sid
    assert json.loads(mark_message(sid, name))["mark"]["name"] == name
    assert json.loads(clear_message(sid))["streamSid"] == sid
