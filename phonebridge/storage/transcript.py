"""The call transcript: agent utterances, caller segments and call events on one timeline.

Times are seconds from the start of the call (the same timeline as the
recording: ``seconds = sample / 8000``).

Agent utterances. The model emits SentencePiece text pieces, each with a
leading space when it starts a word (``" Hello"``, ``","``, ``" there"``). They
are joined as they come and grouped into utterances by one rule:

    a piece starts a new utterance when the silence since the previous piece
    is longer than ``utterance_gap`` (1.0 s), or when the previous piece ended
    a sentence (``. ! ? …``, optionally followed by quotes or brackets) and the
    silence since it is at least ``sentence_gap`` (0.3 s).

An utterance runs from its first piece's time to its last piece's time plus
``piece_seconds`` (80 ms, one PersonaPlex text frame), so even a one-word
utterance has a visible duration.

Export formats:

* JSON (:data:`SCHEMA_VERSION` 1)::

      {"version": 1, "call_sid": "CA…" | null,
       "utterances": [{"speaker": "agent"|"caller", "start": s, "end": s, "text": "…"}],
       "events": [{"kind": "dtmf", "at": s, "detail": "5"}]}

  both lists sorted by time. An event from before the leg's stream started
  (the context lookup, an overflow while the model opened, the answer held)
  sits at ``"at": 0`` and also has ``"pre_stream": s``: seconds after the call
  was admitted (its webhook) that it happened.
* WebVTT (W3C "WebVTT: The Web Video Text Tracks Format", §4.1 file
  structure, §4.2.2 voice spans): one cue per utterance with a ``<v Agent>`` or
  ``<v Caller>`` voice span; events become cues in square brackets.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from phonebridge.errors import StorageError

SCHEMA_VERSION = 1

Speaker = Literal["agent", "caller"]

# closing quotes and brackets may follow the mark: ." .) .\u201d .\u2019
_SENTENCE_END = re.compile("[.!?\u2026][\"')\\]\u201d\u2019]*\\s*$")
_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_SPEAKER_LABEL: dict[str, str] = {"agent": "Agent", "caller": "Caller"}
_EVENT_CUE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of recognised caller speech (from post-call transcription)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Utterance:
    speaker: Speaker
    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Something that happened on the call: ``answered``, ``model_ready``, ``overflow``,
    ``fallback``, ``dtmf`` (detail = the digit), ``hangup`` (detail = who), ..."""

    kind: str
    at: float
    detail: str = ""
    pre_stream: float | None = None
    """For an event before the stream started (``at`` 0): seconds after the call was admitted."""


class TranscriptBuilder:
    """Collects one call's transcript as it happens; cheap enough to call per text piece."""

    def __init__(
        self,
        call_sid: str | None = None,
        *,
        utterance_gap: float = 1.0,
        sentence_gap: float = 0.3,
        piece_seconds: float = 0.08,
    ) -> None:
        self.call_sid = call_sid
        self._utterance_gap = utterance_gap
        self._sentence_gap = sentence_gap
        self._piece_seconds = piece_seconds
        self._agent: list[Utterance] = []
        self._open_text: list[str] = []  # pieces of the agent utterance being built
        self._open_start = 0.0
        self._last_piece_at: float | None = None
        self._caller: list[Utterance] = []
        self._events: list[CallEvent] = []

    # -- input ---------------------------------------------------------------

    def agent_text(self, piece: str, at: float) -> None:
        """A text piece the model emitted at ``at`` seconds into the call."""
        piece = piece.replace("\u2581", " ")  # a raw SentencePiece word marker, if one slips in
        if not piece:
            return
        if self._last_piece_at is not None and self._starts_new_utterance(at):
            self._close_open_utterance()
        if not self._open_text:
            if not piece.strip():
                return  # an utterance never starts with whitespace
            self._open_start = at
        self._open_text.append(piece)
        self._last_piece_at = at

    def _starts_new_utterance(self, at: float) -> bool:
        assert self._last_piece_at is not None
        gap = at - self._last_piece_at
        if gap > self._utterance_gap:
            return True
        ended_sentence = _SENTENCE_END.search("".join(self._open_text[-3:])) is not None
        return ended_sentence and gap >= self._sentence_gap

    def _close_open_utterance(self) -> None:
        text = "".join(self._open_text).strip()
        if text and self._last_piece_at is not None:
            end = self._last_piece_at + self._piece_seconds
            self._agent.append(Utterance("agent", self._open_start, end, text))
        self._open_text = []

    def event(
        self, kind: str, at: float, detail: str = "", *, pre_stream: float | None = None
    ) -> None:
        """Record a call event (``answered``, ``model_ready``, ``hangup`` with ``detail`` = who)."""
        self._events.append(CallEvent(kind, at, detail, pre_stream))

    def dtmf(self, digit: str, at: float) -> None:
        """A key the caller pressed (Twilio ``dtmf`` event: ``0-9``, ``*``, ``#``, ``A-D``)."""
        if digit not in _DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        self.event("dtmf", at, digit)

    def caller_segments(self, segments: Iterable[Segment | tuple[float, float, str]]) -> None:
        """Set the caller's words (replacing earlier ones: transcription may be re-run)."""
        caller: list[Utterance] = []
        for item in segments:
            start, end, text = (
                (item.start, item.end, item.text) if isinstance(item, Segment) else item
            )
            if text.strip():
                caller.append(Utterance("caller", float(start), float(end), text.strip()))
        self._caller = caller

    # -- output --------------------------------------------------------------

    def utterances(self) -> list[Utterance]:
        """Every utterance so far (the one being built included), by start time."""
        agent = list(self._agent)
        text = "".join(self._open_text).strip()
        if text and self._last_piece_at is not None:
            end = self._last_piece_at + self._piece_seconds
            agent.append(Utterance("agent", self._open_start, end, text))
        return sorted(agent + self._caller, key=lambda u: (u.start, u.speaker != "caller"))

    def events(self) -> list[CallEvent]:
        return sorted(self._events, key=lambda e: e.at)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "call_sid": self.call_sid,
            "utterances": [
                {"speaker": u.speaker, "start": u.start, "end": u.end, "text": u.text}
                for u in self.utterances()
            ],
            "events": [_event_json(e) for e in self.events()],
        }

    def to_vtt(self) -> str:
        return transcript_to_vtt(self.to_json())

    def write(self, path: Path) -> None:
        """Write the JSON atomically: readers see the old file or the new one, never half."""
        write_json_atomically(path, self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TranscriptBuilder:
        """Load a stored transcript (e.g. to merge caller words into it after the call)."""
        if data.get("version") != SCHEMA_VERSION:
            raise StorageError(f"unsupported transcript version: {data.get('version')!r}")
        builder = cls(data.get("call_sid"))
        try:
            for u in data["utterances"]:
                speaker = u["speaker"]
                if speaker not in _SPEAKER_LABEL:
                    raise StorageError(f"unknown speaker in transcript: {speaker!r}")
                utterance = Utterance(speaker, float(u["start"]), float(u["end"]), str(u["text"]))
                (builder._agent if speaker == "agent" else builder._caller).append(utterance)
            for e in data["events"]:
                pre = e.get("pre_stream")
                builder._events.append(
                    CallEvent(
                        str(e["kind"]),
                        float(e["at"]),
                        str(e["detail"]),
                        None if pre is None else float(pre),
                    )
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"malformed transcript: {exc!r}") from exc
        return builder


def _event_json(event: CallEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": event.kind, "at": event.at, "detail": event.detail}
    if event.pre_stream is not None:
        out["pre_stream"] = event.pre_stream
    return out


def _vtt_timestamp(millis: int) -> str:
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _vtt_escape(text: str) -> str:
    # Cue text is markup (§4.2): & and < must be escaped; a blank line or "-->"
    # would end the cue, so line breaks become spaces (and "-->" loses its ">").
    flat = " ".join(text.split())
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cue(start: float, end: float, body: str) -> str:
    # Rounded to the millisecond first, so that "end after start" (§4.1) holds
    # for what is written, not just for the floats.
    start_ms = max(0, round(start * 1000))
    end_ms = max(round(end * 1000), start_ms + 1)
    return f"{_vtt_timestamp(start_ms)} --> {_vtt_timestamp(end_ms)}\n{body}\n"


def transcript_to_vtt(data: Mapping[str, Any]) -> str:
    """Render a transcript in the JSON schema above as a WebVTT file."""
    cues: list[tuple[float, str]] = []
    for u in data["utterances"]:
        label = _SPEAKER_LABEL.get(u["speaker"], "Unknown")
        body = f"<v {label}>{_vtt_escape(u['text'])}"
        cues.append((u["start"], _cue(u["start"], u["end"], body)))
    for e in data["events"]:
        words = " ".join(part for part in (e["kind"], e["detail"]) if part)
        body = f"[{_vtt_escape(words)}]"
        cues.append((e["at"], _cue(e["at"], e["at"] + _EVENT_CUE_SECONDS, body)))
    # §4.1: cues must be ordered by start time
    cues.sort(key=lambda cue: cue[0])
    return "WEBVTT\n\n" + "\n".join(text for _, text in cues)


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """tmp file in the same folder + fsync + rename; raises :class:`StorageError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(data, file, ensure_ascii=False, indent=1)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
    except OSError as exc:
        raise StorageError(f"cannot write transcript {path}: {exc}") from exc
