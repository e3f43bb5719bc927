"""The call journal: recording, transcript and call record, written as the call runs.

The call itself matters more than its paperwork: every storage failure here
(disk full, database locked) is logged with the call SID and the call goes
on; the recorder turns itself off on a write error, the call row is retried
at the end. Whatever was written survives (issue 5, "Per call").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.calls.pending import PendingCall
from phonebridge.errors import StorageError
from phonebridge.models.base import SessionTimings
from phonebridge.personas.schema import Persona
from phonebridge.storage import layout
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import UNSET, CallEnd, CallStart, CallStatus, CallUpdate
from phonebridge.storage.recording import CallRecorder
from phonebridge.storage.transcript import TranscriptBuilder
from phonebridge.storage.transcription import transcribe_caller

log = logging.getLogger(__name__)

WallClock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Transcriber:
    """An OpenAI-compatible transcription endpoint for the caller's words (optional)."""

    url: str
    api_key: str | None
    model: str
    client: httpx.AsyncClient


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class UnansweredCall:
    """A call that never reached a conversation (busy, no stream)."""

    call_sid: str
    from_number: str
    to_number: str


class CallJournal:
    """One call's recording, transcript and call row."""

    def __init__(
        self,
        *,
        call_sid: str,
        index: CallIndex | None,
        recorder: CallRecorder | None,
        transcript: TranscriptBuilder,
        transcript_path: Path,
        wall_clock: WallClock,
        started_at: datetime,
        transcriber: Transcriber | None = None,
        background: set[asyncio.Task[None]] | None = None,
    ) -> None:
        self.call_sid = call_sid
        self._transcriber = transcriber
        self._background = background if background is not None else set()
        self._index = index
        self._recorder = recorder
        self.transcript = transcript
        self.transcript_path = transcript_path
        self._wall_clock = wall_clock
        self._started_at = started_at
        self._model_ready_at: datetime | None = None
        self._provider: str | None = None

    # -- as the call runs (synchronous, cheap) ---------------------------------

    def event(self, kind: str, at: float, detail: str = "") -> None:
        self.transcript.event(kind, at, detail)

    def model_ready(self, provider: str, at: float) -> None:
        """The model listens; ``provider`` is the one that actually took the call
        (it differs from the reserved one after an overflow at open)."""
        self.transcript.event("model_ready", at, provider)
        self._model_ready_at = self._wall_clock()
        self._provider = provider

    def dtmf(self, digit: str, at: float) -> None:
        self.transcript.dtmf(digit, at)

    def agent_text(self, piece: str, at: float) -> None:
        self.transcript.agent_text(piece, at)

    def caller_audio(self, pcm8: bytes, at_sample: int) -> None:
        self._record(CallRecorder.add_caller, pcm8, at_sample)

    def agent_audio(self, pcm8: bytes, at_sample: int) -> None:
        self._record(CallRecorder.add_agent, pcm8, at_sample)

    def advance_to(self, sample: int) -> None:
        if self._recorder is not None:
            try:
                self._recorder.advance_to(sample)
            except StorageError as exc:
                self._recording_failed(exc)

    def _record(
        self, add: Callable[[CallRecorder, bytes, int], None], pcm8: bytes, at_sample: int
    ) -> None:
        if self._recorder is None:
            return
        try:
            add(self._recorder, pcm8, at_sample)
        except StorageError as exc:
            self._recording_failed(exc)

    def _recording_failed(self, exc: StorageError) -> None:
        log.error("recording stopped: %s", exc, extra={"call_sid": self.call_sid})
        self.transcript.event("recording_failed", 0.0, str(exc))

    # -- at the end -----------------------------------------------------------------

    async def finish(self, outcome: CallOutcome, timings: SessionTimings, now: float) -> None:
        """Close the recording, write the transcript, complete the call row."""
        errors: list[str] = []
        recording_path: Path | None = None
        if self._recorder is not None:
            # close() fsyncs (~20 ms on a long call): not on the event loop that
            # carries every other call's audio.
            info = await asyncio.to_thread(self._recorder.close)
            recording_path = info.path
            if self._recorder.failed:
                errors.append("recording incomplete (write error)")
        transcript_path: Path | None = self.transcript_path
        try:
            await asyncio.to_thread(self.transcript.write, self.transcript_path)
        except StorageError as exc:
            transcript_path = None
            log.error("transcript not written: %s", exc, extra={"call_sid": self.call_sid})
            errors.append(f"transcript: {exc}")
        if outcome.reason is not CallEndReason.CALLER_HANGUP and outcome.detail:
            errors.append(outcome.detail)
        if self._transcriber is not None and recording_path is not None and transcript_path:
            # After the call is on record: transcription takes seconds, and a
            # failure must cost nothing but the caller's words.
            task = asyncio.create_task(self._add_caller_words(recording_path, transcript_path))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if self._index is None:
            return
        socket_seconds = timings.socket_seconds(now)
        try:
            await self._index.update(
                self.call_sid,
                CallUpdate(
                    provider=self._provider if self._provider is not None else UNSET,
                    model_ready_at=self._model_ready_at,
                    recording_path=str(recording_path) if recording_path else None,
                    transcript_path=str(transcript_path) if transcript_path else None,
                ),
            )
            await self._index.finish_call(
                self.call_sid,
                CallEnd(
                    ended_at=self._wall_clock(),
                    end_reason=outcome.reason.value,
                    ended_by=outcome.reason.ended_by,
                    model_socket_seconds=socket_seconds,
                    error="; ".join(errors) or None,
                ),
            )
        except StorageError as exc:
            log.error("call row not completed: %s", exc, extra={"call_sid": self.call_sid})

    async def _add_caller_words(self, recording: Path, transcript_path: Path) -> None:
        transcriber = self._transcriber
        assert transcriber is not None
        try:
            segments = await transcribe_caller(
                recording,
                url=transcriber.url,
                api_key=transcriber.api_key,
                model=transcriber.model,
                client=transcriber.client,
            )
            self.transcript.caller_segments(segments)
            await asyncio.to_thread(self.transcript.write, transcript_path)
        except StorageError as exc:
            log.warning("caller words not transcribed: %s", exc, extra={"call_sid": self.call_sid})


class JournalFactory:
    """Makes a :class:`CallJournal` per call and records calls that never started."""

    def __init__(
        self,
        *,
        data_dir: Path,
        index: CallIndex | None,
        wall_clock: WallClock = utc_now,
        transcriber: Transcriber | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._index = index
        self._wall_clock = wall_clock
        self._transcriber = transcriber
        self.background: set[asyncio.Task[None]] = set()
        """Post-call work in flight (transcriptions)."""

    async def open(self, pending: PendingCall, stream_sid: str) -> CallJournal:
        started_at = self._wall_clock()
        paths = layout.call_paths(self._data_dir, pending.call_sid, started_at)
        recorder: CallRecorder | None = None
        if pending.persona.recording:
            try:
                recorder = CallRecorder(paths.recording)
            except StorageError as exc:
                log.error("not recording: %s", exc, extra={"call_sid": pending.call_sid})
        await self._start_row(
            CallStart(
                call_sid=pending.call_sid,
                stream_sid=stream_sid,
                from_number=pending.from_number,
                to_number=pending.to_number,
                persona=pending.persona.id,
                provider=pending.lease.provider,
                started_at=started_at,
                status=CallStatus.LIVE,
                recording_path=str(paths.recording) if recorder is not None else None,
                transcript_path=str(paths.transcript),
            )
        )
        return CallJournal(
            call_sid=pending.call_sid,
            index=self._index,
            recorder=recorder,
            transcript=TranscriptBuilder(pending.call_sid),
            transcript_path=paths.transcript,
            wall_clock=self._wall_clock,
            started_at=started_at,
            transcriber=self._transcriber,
            background=self.background,
        )

    async def record_unanswered(
        self, call: UnansweredCall, persona: Persona, reason: CallEndReason, detail: str
    ) -> None:
        """A call that never got a model (busy): one row, no files."""
        now = self._wall_clock()
        await self._start_row(
            CallStart(
                call_sid=call.call_sid,
                from_number=call.from_number,
                to_number=call.to_number,
                persona=persona.id,
                started_at=now,
            )
        )
        await self._finish_row(call.call_sid, reason, detail, now, 0.0)

    async def record_unanswered_pending(
        self, pending: PendingCall, outcome: CallOutcome, now: float
    ) -> None:
        """A webhook-reserved call whose stream never came (or the bridge shut down)."""
        wall = self._wall_clock()
        await self._start_row(
            CallStart(
                call_sid=pending.call_sid,
                from_number=pending.from_number,
                to_number=pending.to_number,
                persona=pending.persona.id,
                provider=pending.lease.provider,
                started_at=wall,
            )
        )
        socket_seconds = pending.session.timings.socket_seconds(now)
        await self._finish_row(
            pending.call_sid, outcome.reason, outcome.detail, wall, socket_seconds
        )

    async def _start_row(self, start: CallStart) -> None:
        if self._index is None:
            return
        try:
            await self._index.start_call(start)
        except StorageError as exc:
            log.error("call row not created: %s", exc, extra={"call_sid": start.call_sid})

    async def _finish_row(
        self,
        call_sid: str,
        reason: CallEndReason,
        detail: str,
        ended_at: datetime,
        socket_seconds: float,
    ) -> None:
        if self._index is None:
            return
        end = CallEnd(
            ended_at=ended_at,
            end_reason=reason.value,
            ended_by=reason.ended_by,
            model_socket_seconds=socket_seconds,
            error=detail or None,
        )
        try:
            await self._index.finish_call(call_sid, end)
        except StorageError as exc:
            log.error("call row not completed: %s", exc, extra={"call_sid": call_sid})
