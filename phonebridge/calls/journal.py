"""The call journal: recording, transcript and call record, written as the call runs.

The call itself matters more than its paperwork: every storage failure here
(disk full, database locked) is logged with the call SID and the call goes
on. Whatever was written survives (issues 5 and 8). What happens, decided:

- **Recording write fails** (disk full, file too large): the recorder turns
  itself off after logging once; the call goes on; the WAV keeps what was
  written (its header fixed at the end); the call row's ``error`` says
  "recording incomplete" with the length kept and the OS error, and the
  transcript has a ``recording_failed`` event at the moment it happened.
- **Call index locked or unavailable**: the call never waits for it. The
  row is inserted in the background when the stream starts; at the end the
  final write is tried once inline (inserting the row first if the start
  failed) and, failing that, handed to the row spool
  (:mod:`phonebridge.storage.row_spool`: on disk, retried until the index
  takes it, across restarts too), as is the row of a call refused or
  abandoned while the index was down. Without a spool (tests, tools) it is
  retried in memory for about a quarter of a minute
  (:data:`ROW_RETRY_DELAYS`). The transcript, written first, always ends
  with a ``call`` event holding the row's facts as JSON, so a row that is
  never written is not a call that is lost.
- **Post-call webhook**: the call's summary deliveries (:class:`SummaryQueue`)
  are queued in the same transaction as the final row write, on every try:
  a row is final with its summary queued, or neither.
"""

from __future__ import annotations

import asyncio
import audioop  # stdlib before 3.13, the audioop-lts package from 3.13 on
import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx

from phonebridge.calls.outcome import CallEndReason, CallOutcome
from phonebridge.calls.pending import PendingCall
from phonebridge.calls.policy import TransferFacts
from phonebridge.calls.voice_activity import VOICE_RMS_THRESHOLD
from phonebridge.errors import StorageError
from phonebridge.models.base import SessionTimings
from phonebridge.personas.schema import Persona
from phonebridge.storage import layout
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import (
    UNSET,
    CallEnd,
    CallStart,
    CallStatus,
    CallUpdate,
    OutboxEntry,
)
from phonebridge.storage.recording import CallRecorder
from phonebridge.storage.row_spool import RowSpool, RowWrite
from phonebridge.storage.transcript import TranscriptBuilder
from phonebridge.storage.transcription import transcribe_caller

log = logging.getLogger(__name__)

ROW_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Waits before each background retry of a call's final row (after the inline try).

Why about 15 s in all: a locked SQLite (another process, a backup) is usually
free again within seconds, and each attempt may itself wait out the index's
busy timeout; beyond that the transcript holds the facts and the next
start-up marks the row as crashed."""

WallClock = Callable[[], datetime]


class SummaryQueue(Protocol):
    """The post-call webhook as the journal sees it (webhooks/delivery.py CallSummaries)."""

    def entries(self, call_sid: str, persona_id: str) -> list[OutboxEntry]:
        """The deliveries to queue with the call's final row (empty: no receiver)."""
        ...

    def queued(self) -> None:
        """Entries were committed with a final row: deliver them soon."""
        ...


@dataclass(frozen=True, slots=True)
class Transcriber:
    """An OpenAI-compatible transcription endpoint for the caller's words (optional)."""

    url: str
    api_key: str | None
    model: str
    client: httpx.AsyncClient


def utc_now() -> datetime:
    return datetime.now(UTC)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


@dataclass(frozen=True, slots=True)
class UnansweredCall:
    """A call that never reached a conversation (busy, no stream)."""

    call_sid: str
    from_number: str
    to_number: str
    channel: str = ""
    placed_by: str | None = None


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
        start: CallStart | None = None,
        row_started: asyncio.Task[bool] | None = None,
        recording_error: str | None = None,
        summaries: SummaryQueue | None = None,
        sample_rate: int = 8000,
        spool: RowSpool | None = None,
    ) -> None:
        self._summaries = summaries
        self._spool = spool  # where a row the index refused waits (None: retried in memory)
        self.sample_rate = sample_rate  # the leg's: every at_sample counts at it
        self._recording_error = recording_error  # why the call is not recorded at all
        self.call_sid = call_sid
        self._start = start  # the row's first facts, to insert it late if the start failed
        self._row_started = row_started
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
        self._first_agent_voice: float | None = None  # seconds into the call
        self._transfer: TransferFacts | None = None
        self._transfer_at: datetime | None = None  # when the first word on it came

    # -- as the call runs (synchronous, cheap) ---------------------------------

    def event(
        self, kind: str, at: float, detail: str = "", *, pre_stream: float | None = None
    ) -> None:
        self.transcript.event(kind, at, detail, pre_stream=pre_stream)

    def model_ready(self, provider: str, at: float) -> None:
        """The model listens; ``provider`` is the one that actually took the call
        (it differs from the reserved one after an overflow at open)."""
        self.transcript.event("model_ready", at, provider)
        self._model_ready_at = self._wall_clock()
        self._provider = provider

    def transfer(self, facts: TransferFacts) -> None:
        """The call's hand-off to a human (the latest word on it wins; the first one's time)."""
        self._transfer = facts
        if self._transfer_at is None:
            self._transfer_at = self._wall_clock()

    def dtmf(self, digit: str, at: float) -> None:
        self.transcript.dtmf(digit, at)

    def agent_text(self, piece: str, at: float) -> None:
        self.transcript.agent_text(piece, at)

    def caller_audio(self, pcm: bytes, at_sample: int) -> None:
        self._record(CallRecorder.add_caller, pcm, at_sample)

    def agent_audio(self, pcm: bytes, at_sample: int) -> None:
        if self._first_agent_voice is None and audioop.rms(pcm, 2) >= VOICE_RMS_THRESHOLD:
            # The first agent audio the caller can hear, where it sits on the line.
            # Not the first page: PersonaPlex sends pages of silence from the
            # start, and what callers wait for is the agent's voice. Measured
            # only until found, so a call pays for one rms per page at most
            # until the greeting.
            self._first_agent_voice = max(0, at_sample) / self.sample_rate
        self._record(CallRecorder.add_agent, pcm, at_sample)

    def advance_to(self, sample: int) -> None:
        if self._recorder is not None:
            try:
                self._recorder.advance_to(sample)
            except StorageError as exc:
                self._recording_failed(exc, sample)

    def _record(
        self, add: Callable[[CallRecorder, bytes, int], None], pcm: bytes, at_sample: int
    ) -> None:
        if self._recorder is None:
            return
        try:
            add(self._recorder, pcm, at_sample)
        except StorageError as exc:
            self._recording_failed(exc, at_sample)

    def _recording_failed(self, exc: StorageError, at_sample: int) -> None:
        # The recorder raises once and then turns itself off: this runs once per call.
        log.error("recording stopped: %s", exc, extra={"call_sid": self.call_sid})
        self.transcript.event("recording_failed", max(0, at_sample) / self.sample_rate, str(exc))

    # -- at the end -----------------------------------------------------------------

    async def finish(self, outcome: CallOutcome, timings: SessionTimings, now: float) -> None:
        """Close the recording, write the transcript, complete the call row."""
        errors: list[str] = [self._recording_error] if self._recording_error else []
        recording_path: Path | None = None
        if self._recorder is not None:
            # close() fsyncs (~20 ms on a long call): not on the event loop that
            # carries every other call's audio.
            info = await asyncio.to_thread(self._recorder.close)
            recording_path = info.path
            if not info.complete:
                errors.append(
                    f"recording incomplete: {info.duration_seconds:.1f} s kept ({info.error})"
                )
        ended_at = self._wall_clock()
        end = CallEnd(
            ended_at=ended_at,
            end_reason=outcome.reason.value,
            ended_by=outcome.reason.ended_by,
            model_socket_seconds=timings.socket_seconds(now),
        )
        self._note_call_facts(end, errors, timings)
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
        changes = CallUpdate(
            provider=self._provider if self._provider is not None else UNSET,
            model_ready_at=self._model_ready_at,
            first_agent_audio_seconds=self._first_agent_voice,
            recording_path=str(recording_path) if recording_path else None,
            transcript_path=str(transcript_path) if transcript_path else None,
        )
        if self._transfer is not None:
            changes = dataclasses.replace(
                changes,
                transfer_to=self._transfer.to,
                transfer_mode=self._transfer.mode,
                transfer_at=self._transfer_at,
                transfer_result=self._transfer.result,
            )
        end = dataclasses.replace(end, error="; ".join(errors) or None)
        # Made once: a retried write queues the same deliveries (the same keys).
        outbox = self._outbox_entries()
        try:
            await self._complete_row(self._index, changes, end, outbox)
            self._announce_queued(outbox)
        except StorageError as exc:
            if self._spool is not None and await self._spooled(changes, end, outbox, exc):
                return
            log.error(
                "call row not completed (retrying in the background; the transcript has "
                "the call's facts): %s",
                exc,
                extra={"call_sid": self.call_sid},
            )
            task = asyncio.create_task(self._retry_row(self._index, changes, end, outbox))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _spooled(
        self,
        changes: CallUpdate,
        end: CallEnd,
        outbox: Sequence[OutboxEntry],
        exc: StorageError,
    ) -> bool:
        """Hand the row to the spool (its summary deliveries along); False if even the
        disk refused it."""
        assert self._spool is not None
        # The start goes along: the spool inserts it only if the row is missing.
        write = RowWrite(
            self.call_sid, end=end, start=self._start, changes=changes, outbox=tuple(outbox)
        )
        try:
            await self._spool.put(write)
        except StorageError as spool_exc:
            log.error("call row not spooled: %s", spool_exc, extra={"call_sid": self.call_sid})
            return False
        log.warning(
            "call index unavailable (%s); call row spooled, written when it is back",
            exc,
            extra={"call_sid": self.call_sid},
        )
        return True

    def _note_call_facts(self, end: CallEnd, errors: list[str], timings: SessionTimings) -> None:
        """The row's facts as the transcript's last event: they survive a lost row."""
        start = self._start
        facts = {
            "channel": start.channel if start else None,
            "placed_by": start.placed_by if start else None,
            "from": start.from_number if start else None,
            "to": start.to_number if start else None,
            "persona": start.persona if start else None,
            "provider": self._provider or (start.provider if start else None),
            "started_at": self._started_at.isoformat(),
            "ended_at": end.ended_at.isoformat(),
            "end_reason": end.end_reason,
            "ended_by": end.ended_by,
            "model_socket_seconds": round(end.model_socket_seconds or 0.0, 3),
            # how long the model took to open (from the webhook): the transcript
            # view says "Model ready on X (took N s)" with it
            "model_open_seconds": _rounded(timings.time_to_ready),
            "first_agent_audio_seconds": _rounded(self._first_agent_voice),
            "transfer": (
                None
                if self._transfer is None
                else {
                    "to": self._transfer.to,
                    "mode": self._transfer.mode,
                    "at": self._transfer_at.isoformat() if self._transfer_at else None,
                    "result": self._transfer.result,
                }
            ),
            "errors": list(errors),
        }
        at = max(0.0, (end.ended_at - self._started_at).total_seconds())
        self.transcript.event("call", at, json.dumps(facts, separators=(",", ":")))

    async def _complete_row(
        self,
        index: CallIndex,
        changes: CallUpdate,
        end: CallEnd,
        outbox: Sequence[OutboxEntry],
    ) -> None:
        """Insert the row if its start never made it, then update and end it (the
        summary's deliveries queued with the end, in its transaction)."""
        started = True if self._row_started is None else await self._row_started
        if not started and self._start is not None and await index.get(self.call_sid) is None:
            await index.start_call(self._start)
        self._row_started = None  # inserted now (or it was there): never insert again
        await index.update(self.call_sid, changes)
        await index.finish_call(self.call_sid, end, outbox=outbox)

    async def _retry_row(
        self,
        index: CallIndex,
        changes: CallUpdate,
        end: CallEnd,
        outbox: Sequence[OutboxEntry],
    ) -> None:
        last: StorageError | None = None
        for attempt, delay in enumerate(ROW_RETRY_DELAYS, start=2):
            await asyncio.sleep(delay)
            try:
                await self._complete_row(index, changes, end, outbox)
            except StorageError as exc:
                last = exc
                continue
            log.info("call row completed on attempt %d", attempt, extra={"call_sid": self.call_sid})
            self._announce_queued(outbox)
            return
        log.error(
            "call row lost after %d attempts (%s); the call's facts are in %s",
            len(ROW_RETRY_DELAYS) + 1,
            last,
            self.transcript_path,
            extra={"call_sid": self.call_sid},
        )

    def _outbox_entries(self) -> list[OutboxEntry]:
        if self._summaries is None or self._start is None:
            return []
        return self._summaries.entries(self.call_sid, self._start.persona)

    def _announce_queued(self, outbox: Sequence[OutboxEntry]) -> None:
        if outbox and self._summaries is not None:
            self._summaries.queued()

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
        summaries: SummaryQueue | None = None,
        spool: RowSpool | None = None,
    ) -> None:
        self._summaries = summaries
        self._data_dir = data_dir
        self._index = index
        self.spool = spool
        """Where rows the index refused wait for it (None: retried in memory only)."""
        self._wall_clock = wall_clock
        self._transcriber = transcriber
        self.background: set[asyncio.Task[None]] = set()
        """Post-call work in flight (transcriptions)."""

    async def open(self, pending: PendingCall, stream_sid: str) -> CallJournal:
        started_at = self._wall_clock()
        paths = layout.call_paths(self._data_dir, pending.call_sid, started_at)
        recorder: CallRecorder | None = None
        recording_error: str | None = None
        if pending.persona.recording:
            try:
                recorder = CallRecorder(paths.recording, sample_rate=pending.sample_rate)
            except StorageError as exc:
                log.error("not recording: %s", exc, extra={"call_sid": pending.call_sid})
                recording_error = f"not recorded: {exc}"
        start = CallStart(
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
            channel=pending.channel,
            placed_by=pending.placed_by,
            sample_rate=pending.sample_rate,
        )
        # In the background: a locked database must not keep the caller waiting
        # (the model is open and the caller's words are dropped until the call runs).
        row_started = asyncio.create_task(
            self._start_row(start), name=f"{pending.call_sid}:row-start"
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
            start=start,
            row_started=row_started,
            recording_error=recording_error,
            summaries=self._summaries,
            sample_rate=pending.sample_rate,
            spool=self.spool,
        )

    async def record_unanswered(
        self, call: UnansweredCall, persona: Persona, reason: CallEndReason, detail: str
    ) -> None:
        """A call that never got a model (busy): one row, no files."""
        now = self._wall_clock()
        start = CallStart(
            call_sid=call.call_sid,
            from_number=call.from_number,
            to_number=call.to_number,
            persona=persona.id,
            started_at=now,
            channel=call.channel,
            placed_by=call.placed_by,
        )
        await self._unanswered_row(start, reason, detail, now, 0.0)

    async def record_orphan(self, call: UnansweredCall, persona: Persona) -> None:
        """A call another replica held and died with, if that replica left no row.

        The replica inserts a call's row just after its stream starts, in the
        background; killed in between, it leaves none. The survivor answering
        the caller's ``<Connect action>`` then writes one (ended ``crashed``),
        so the call is on record. A row that exists is left alone: its replica
        wrote it, and it is ended at that replica's restart or by a survivor.
        """
        if self._index is None:
            return
        try:
            if await self._index.get(call.call_sid) is not None:
                return
        except StorageError as exc:
            log.warning("orphaned call not checked: %s", exc, extra={"call_sid": call.call_sid})
            return
        now = self._wall_clock()
        start = CallStart(
            call_sid=call.call_sid,
            from_number=call.from_number,
            to_number=call.to_number,
            persona=persona.id,
            started_at=now,
            channel=call.channel,
        )
        await self._unanswered_row(
            start,
            CallEndReason.CRASHED,
            "the replica holding the call stopped before writing its row",
            now,
            0.0,
        )

    async def record_unanswered_pending(
        self, pending: PendingCall, outcome: CallOutcome, now: float
    ) -> None:
        """A webhook-reserved call whose stream never came (or the bridge shut down)."""
        wall = self._wall_clock()
        start = CallStart(
            call_sid=pending.call_sid,
            from_number=pending.from_number,
            to_number=pending.to_number,
            persona=pending.persona.id,
            provider=pending.lease.provider,
            started_at=wall,
            channel=pending.channel,
            placed_by=pending.placed_by,
            sample_rate=pending.sample_rate,
        )
        socket_seconds = pending.session.timings.socket_seconds(now)
        await self._unanswered_row(start, outcome.reason, outcome.detail, wall, socket_seconds)

    async def _unanswered_row(
        self,
        start: CallStart,
        reason: CallEndReason,
        detail: str,
        ended_at: datetime,
        socket_seconds: float,
    ) -> None:
        """Insert and end the row of a call that never ran; spool it if the index refuses."""
        end = CallEnd(
            ended_at=ended_at,
            end_reason=reason.value,
            ended_by=reason.ended_by,
            model_socket_seconds=socket_seconds,
            error=detail or None,
        )
        if self._index is None:
            return
        if self.spool is None:
            await self._start_row(start)
            await self._finish_row(
                start.call_sid, reason, detail, ended_at, socket_seconds, persona_id=start.persona
            )
            return
        summaries = self._summaries
        outbox = summaries.entries(start.call_sid, start.persona) if summaries is not None else []
        write = RowWrite(start.call_sid, end=end, start=start, outbox=tuple(outbox))
        try:
            await write.apply(self._index)
            if outbox and summaries is not None:
                summaries.queued()
        except StorageError as exc:
            try:
                await self.spool.put(write)
            except StorageError as spool_exc:
                log.error(
                    "call row lost: %s; %s", exc, spool_exc, extra={"call_sid": start.call_sid}
                )
                return
            log.warning(
                "call index unavailable (%s); call row spooled, written when it is back",
                exc,
                extra={"call_sid": start.call_sid},
            )

    async def _start_row(self, start: CallStart) -> bool:
        """Insert a call's first row; False (logged) when the index refused it."""
        if self._index is None:
            return True
        try:
            await self._index.start_call(start)
        except StorageError as exc:
            log.error("call row not created: %s", exc, extra={"call_sid": start.call_sid})
            return False
        return True

    async def _finish_row(
        self,
        call_sid: str,
        reason: CallEndReason,
        detail: str,
        ended_at: datetime,
        socket_seconds: float,
        *,
        persona_id: str,
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
        summaries = self._summaries
        outbox = summaries.entries(call_sid, persona_id) if summaries is not None else []
        try:
            await self._index.finish_call(call_sid, end, outbox=outbox)
        except StorageError as exc:
            log.error("call row not completed: %s", exc, extra={"call_sid": call_sid})
            return
        if outbox and summaries is not None:
            summaries.queued()
