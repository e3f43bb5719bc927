"""Fuzzing the Twilio Media Streams parser and socket state (PROTOCOLS.md §1.2).

tests/telephony/test_twilio_protocol.py already throws random text and
one-field mutations at :func:`parse_message`. This file goes further: raw JSON
*text* spliced into a valid message (numbers past every limit, nesting deeper
than the recursion limit, NaN), truncated and byte-flipped frames, non-UTF-8
binary frames, and whole sequences of frames fed to one
:class:`MediaStreamProtocol`, so order and identity checks are fuzzed too.

The property: every frame gives an event, ``None``, or a
:class:`RemoteProtocolError`; never any other exception, which would kill
the call task instead of ending the call cleanly.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.errors import RemoteProtocolError
from phonebridge.telephony.twilio.events import TwilioEvent
from phonebridge.telephony.twilio.protocol import (
    MAX_MESSAGE_CHARS,
    MediaStreamProtocol,
    StreamState,
    parse_message,
)

from .hostile import FUZZ_SETTINGS, deep_json, raw_json_replacements

SAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "telephony" / "twilio_stream_samples.json").read_text()
)
KINDS = sorted(SAMPLES)
HOLE = "\x00hole\x00"


def _slots(doc: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    found: list[tuple[dict[str, Any], str]] = []
    for key, child in doc.items():
        found.append((doc, key))
        if isinstance(child, dict):
            found += _slots(child)
    return found


def spliced(kind: str, slot: int, raw_value: str) -> str:
    """The sample of ``kind`` with one value replaced by arbitrary JSON *text*."""
    doc = copy.deepcopy(SAMPLES[kind])
    slots = _slots(doc)
    parent, key = slots[slot % len(slots)]
    parent[key] = HOLE
    return json.dumps(doc).replace(json.dumps(HOLE), raw_value, 1)


def parse_or_own_error(raw: str | bytes) -> TwilioEvent | None:
    try:
        return parse_message(raw)
    except RemoteProtocolError:
        return None


spliced_frames = st.builds(
    spliced, st.sampled_from(KINDS), st.integers(0, 40), raw_json_replacements()
)


@settings(**FUZZ_SETTINGS)
@given(frame=spliced_frames)
def test_spliced_raw_json_gives_an_event_or_remote_error(frame: str) -> None:
    parse_or_own_error(frame)


@settings(**FUZZ_SETTINGS)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_truncated_and_flipped_frames_give_an_event_or_remote_error(
    kind: str, data: st.DataObject
) -> None:
    text = json.dumps(SAMPLES[kind])
    cut = data.draw(st.integers(0, len(text)))
    parse_or_own_error(text[:cut])
    at = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.characters())
    parse_or_own_error(text[:at] + char + text[at + 1 :])
    # The same bytes as a binary frame, and bytes that are not UTF-8 at all.
    parse_or_own_error(text.encode())
    parse_or_own_error(b"\xff\xfe" + text.encode()[:cut])


def test_limits_of_the_json_decoder_are_remote_errors() -> None:
    # Each of these raised something other than ValueError from json.loads or int().
    for frame in (
        deep_json(10_000),
        deep_json(5_000, opener='{"a":', closer="}").replace('{"a":}', '{"a":1}'),
        spliced("media", 0, deep_json(2_000)),
        spliced("start", 5, "9" * 5000),  # sampleRate past the int/str digit limit
        spliced("start", 5, "1e999"),  # sampleRate = inf
        spliced("start", 5, "NaN"),
        spliced("media", 1, '"' + "9" * 19 + '"'),  # sequenceNumber past int64
        "x" * (MAX_MESSAGE_CHARS + 1),
        "\ud800",
    ):
        try:
            parse_message(frame)
        except RemoteProtocolError:
            continue
        raise AssertionError(f"accepted {frame[:60]!r}")


hostile_frames: st.SearchStrategy[str | bytes] = (
    st.sampled_from(KINDS).map(lambda kind: json.dumps(SAMPLES[kind]))
    | spliced_frames
    | st.text(max_size=60)
    | st.binary(max_size=60)
)


@settings(**FUZZ_SETTINGS)
@given(frames=st.lists(hostile_frames, max_size=12), clock=st.floats(0, 1e6))
def test_any_sequence_of_frames_on_one_socket(frames: list[str | bytes], clock: float) -> None:
    proto = MediaStreamProtocol()
    for step, frame in enumerate(frames):
        now = clock + step * 0.02
        try:
            proto.receive(frame, now)
        except RemoteProtocolError:
            # The session closes the socket at the first protocol error.
            assert proto.state is StreamState.FAILED
            break
        stats = proto.stats(now)
        assert stats.media_bytes >= 0
        assert stats.messages == step + 1
        if proto.state is StreamState.STREAMING:
            assert proto.start is not None
    # Stats are readable in any state (the hang-up path logs them).
    proto.stats(clock + 100.0)
