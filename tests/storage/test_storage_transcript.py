"""Transcript building: grouping text pieces into utterances, events, JSON and WebVTT."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.errors import StorageError
from phonebridge.storage.transcript import (
    Segment,
    TranscriptBuilder,
    transcript_to_vtt,
    write_json_atomically,
)

SID = "CA" + "ab" * 16


def feed(builder: TranscriptBuilder, pieces: list[tuple[str, float]]) -> None:
    for piece, at in pieces:
        builder.agent_text(piece, at)


def agent_texts(builder: TranscriptBuilder) -> list[str]:
    return [u["text"] for u in builder.to_json()["utterances"] if u["speaker"] == "agent"]


def test_pieces_join_into_words_with_their_leading_spaces() -> None:
    builder = TranscriptBuilder()
    feed(builder, [(" Hel", 0.5), ("lo", 0.58), (",", 0.66), (" how", 0.74), (" are", 0.82)])
    (utterance,) = builder.to_json()["utterances"]
    assert utterance == {
        "speaker": "agent",
        "start": 0.5,
        "end": pytest.approx(0.9),
        "text": "Hello, how are",
    }


def test_a_long_silence_starts_a_new_utterance() -> None:
    builder = TranscriptBuilder()
    feed(builder, [(" one", 0.0), (" two", 1.0), (" three", 2.01)])  # 1.0 s is not > 1.0 s
    assert agent_texts(builder) == ["one two", "three"]


def test_sentence_end_followed_by_a_pause_starts_a_new_utterance() -> None:
    builder = TranscriptBuilder()
    feed(builder, [(" Hi", 0.0), (".", 0.08), (" Yes", 0.4)])
    assert agent_texts(builder) == ["Hi.", "Yes"]


def test_sentence_end_without_a_pause_keeps_the_utterance() -> None:
    builder = TranscriptBuilder()
    feed(builder, [(" Hi", 0.0), ("!", 0.08), (" Yes", 0.16), ('?"', 0.24), (" No", 0.8)])
    assert agent_texts(builder) == ['Hi! Yes?"', "No"]


def test_whitespace_and_sentencepiece_markers() -> None:
    builder = TranscriptBuilder()
    feed(builder, [(" ", 0.0), ("", 0.1), ("\u2581Hello", 0.2), ("\u2581world", 0.3)])
    (utterance,) = builder.to_json()["utterances"]
    assert utterance["text"] == "Hello world"
    assert utterance["start"] == 0.2


@given(st.lists(st.tuples(st.text(max_size=6), st.floats(0, 5)), max_size=30))
def test_grouping_never_loses_or_reorders_text(raw: list[tuple[str, float]]) -> None:
    pieces = []
    at = 0.0
    for text, gap in raw:
        at += gap
        pieces.append((text, at))
    builder = TranscriptBuilder()
    feed(builder, pieces)
    utterances = builder.to_json()["utterances"]
    joined = "".join("".join(u["text"].split()) for u in utterances)
    expected = "".join("".join(t for t, _ in pieces).replace("\u2581", " ").split())
    assert joined == expected
    starts = [u["start"] for u in utterances]
    assert starts == sorted(starts)
    assert all(u["end"] > u["start"] for u in utterances)


def test_events_dtmf_and_caller_segments_share_the_timeline() -> None:
    builder = TranscriptBuilder(SID)
    builder.event("answered", 0.0)
    builder.event("model_ready", 0.9)
    feed(builder, [(" Hello", 1.0)])
    builder.dtmf("5", 3.0)
    builder.event("hangup", 4.5, "caller")
    builder.caller_segments([Segment(1.5, 2.5, " Hi there "), (2.6, 2.9, "  "), (0.2, 0.6, "Hm")])
    data = builder.to_json()
    assert data["version"] == 1
    assert data["call_sid"] == SID
    assert [(u["speaker"], u["text"]) for u in data["utterances"]] == [
        ("caller", "Hm"),
        ("agent", "Hello"),
        ("caller", "Hi there"),
    ]
    assert data["events"] == [
        {"kind": "answered", "at": 0.0, "detail": ""},
        {"kind": "model_ready", "at": 0.9, "detail": ""},
        {"kind": "dtmf", "at": 3.0, "detail": "5"},
        {"kind": "hangup", "at": 4.5, "detail": "caller"},
    ]
    builder.caller_segments([])  # re-running transcription replaces, not appends
    assert [u["speaker"] for u in builder.to_json()["utterances"]] == ["agent"]


@pytest.mark.parametrize("digit", ["", "55", "x", "e"])
def test_dtmf_refuses_non_digits(digit: str) -> None:
    with pytest.raises(ValueError, match="DTMF"):
        TranscriptBuilder().dtmf(digit, 0.0)


CUE_TIMING = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})$")


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """A strict reader for the subset we write: header, blank line, cue blocks."""
    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in text[len("WEBVTT\n\n") :].split("\n\n"):
        if not block.strip():
            continue
        timing, *body = block.strip("\n").split("\n")
        match = CUE_TIMING.match(timing)
        assert match, timing
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        assert max(m1, s1, m2, s2) < 60
        start = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000
        end = h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert end > start
        assert len(body) == 1
        assert "-->" not in body[0]
        cues.append((start, end, body[0]))
    return cues


def test_vtt_has_voice_spans_escaped_text_and_ordered_cues() -> None:
    builder = TranscriptBuilder()
    feed(builder, [(" Fish", 3725.5), (" & chips <b>", 3725.6), (" -->", 3725.7)])
    builder.caller_segments([(1.0, 2.0, "line one\n\nline two")])
    builder.dtmf("#", 0.25)
    cues = parse_vtt(builder.to_vtt())
    assert cues == [
        (0.25, 1.25, "[dtmf #]"),
        (1.0, 2.0, "<v Caller>line one line two"),
        (3725.5, 3725.78, "<v Agent>Fish &amp; chips &lt;b&gt; --&gt;"),
    ]


def test_vtt_timestamps_roll_over_into_hours() -> None:
    text = transcript_to_vtt(
        {
            "utterances": [{"speaker": "agent", "start": 3599.9995, "end": 3599.9995, "text": "x"}],
            "events": [],
        }
    )
    assert "01:00:00.000 --> 01:00:00.001" in text


def test_write_is_atomic_and_round_trips(tmp_path: Path) -> None:
    builder = TranscriptBuilder(SID)
    feed(builder, [(" Hello", 0.1)])
    builder.event("hangup", 2.0, "agent")
    path = tmp_path / "t" / "call.json"
    builder.write(path)
    builder.write(path)  # replacing works too
    assert os.listdir(path.parent) == ["call.json"]  # no temporary file left behind
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored == builder.to_json()
    again = TranscriptBuilder.from_json(stored)
    again.caller_segments([(0.5, 0.9, "hi")])
    assert [u["speaker"] for u in again.to_json()["utterances"]] == ["agent", "caller"]
    assert again.to_json()["events"] == stored["events"]


def test_write_failure_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("x", encoding="utf-8")
    with pytest.raises(StorageError, match="cannot write transcript"):
        TranscriptBuilder().write(tmp_path / "not-a-folder" / "call.json")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "call.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        write_json_atomically(path, {"not json": object()})
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["call.json"]


@pytest.mark.parametrize(
    "data",
    [
        {"version": 2, "utterances": [], "events": []},
        {
            "version": 1,
            "utterances": [{"speaker": "bot", "start": 0, "end": 1, "text": ""}],
            "events": [],
        },
        {"version": 1, "utterances": [{"start": 0}], "events": []},
        {"version": 1, "utterances": []},
    ],
)
def test_from_json_rejects_malformed_transcripts(data: dict[str, object]) -> None:
    with pytest.raises(StorageError):
        TranscriptBuilder.from_json(data)
