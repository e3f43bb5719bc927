"""The call-history HTTP API (issue 5, "HTTP API"): the index, recordings and transcripts.

Routes (all behind the dashboard auth dependency, see :mod:`phonebridge.web.auth`)::

    GET /api/calls                              filters + limit/offset, with the total
    GET /api/calls/{call_sid}                   one call
    GET /api/calls/{call_sid}/recording.wav     RFC 9110 §14 Range requests (206 / 416)
    GET /api/calls/{call_sid}/transcript.json   the stored transcript
    GET /api/calls/{call_sid}/transcript.vtt    the same as WebVTT
    GET /api/calls/{call_sid}/waveform.json     min/max peaks per channel for the picture

Path safety. A file is only ever served from a path stored in the call's row,
after (1) the SID in the URL passed :func:`validate_call_sid` (``CA`` + 32 hex
digits: no separator or dot can get in) and (2) the stored path was resolved
with :func:`resolve_inside`, so a row pointing outside the data directory (or a
symlink that does) is refused. Anything else is a 404: there is no route that
takes a file name, hence no directory listing. Stored absolute paths are not
shown to clients.

Byte ranges are Starlette's :class:`FileResponse` (single and multiple ranges,
``If-Range``, 416 with ``Content-Range: bytes */size``); tests hold it to that.

Any replica serves any call. When a call's file is not on this replica's disk
(another replica recorded it) and an object store is configured, the file is
read from the store under the key made from the call's SID and start time
(:func:`call_keys`, never from a stored path), ranges included
(:mod:`phonebridge.web.object_response`). The store is only asked about calls
whose row exists; a store that cannot be reached answers 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_keys, is_valid_call_sid, resolve_inside
from phonebridge.storage.models import CallQuery, CallRecord, CallStatus
from phonebridge.storage.objects import ObjectInfo, ObjectStore
from phonebridge.storage.transcript import transcript_to_vtt
from phonebridge.web.auth import AuthDependency
from phonebridge.web.object_response import object_response
from phonebridge.web.waveform import Peaks, PeaksCache, wav_peaks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveCallInfo:
    """A call this process is running right now."""

    call_sid: str
    persona: str
    seconds: float
    """How long it has been going (the call's own timeline)."""


class _LiveSession(Protocol):
    @property
    def call_sid(self) -> str: ...

    @property
    def persona(self) -> Any: ...  # has .id

    def now(self) -> float: ...


def live_calls(sessions: Mapping[str, _LiveSession]) -> Callable[[], Mapping[str, LiveCallInfo]]:
    """Adapt ``bridge.live`` (call SID -> CallSession) to what the API reads."""

    def snapshot() -> Mapping[str, LiveCallInfo]:
        return {
            sid: LiveCallInfo(sid, str(session.persona.id), session.now())
            for sid, session in list(sessions.items())  # copy: calls come and go meanwhile
        }

    return snapshot


class CallOut(BaseModel):
    """One call as the API shows it (file paths replaced by URLs)."""

    call_sid: str
    stream_sid: str | None
    from_number: str
    to_number: str
    persona: str
    provider: str
    status: CallStatus
    live: bool
    """True while this process is running the call (the row says ``live`` too, but
    a row left ``live`` by a crashed process is not)."""
    live_seconds: float | None
    started_at: datetime
    model_ready_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float | None
    end_reason: str | None
    ended_by: str | None
    model_socket_seconds: float | None
    first_agent_audio_seconds: float | None
    """From the answer to the first audible agent audio on the caller's line."""
    error: str | None
    files_expired_at: datetime | None
    replica: str | None
    """The replica that holds (or held) the call; None for a single process."""
    sample_rate: int
    files_stored_at: datetime | None
    """When the files reached the object store (None: only on the recording replica's disk)."""
    recording_url: str | None
    transcript_url: str | None
    transcript_vtt_url: str | None
    waveform_url: str | None
    channel: str = ""
    """The kind of leg that carried the call: ``twilio``, ``browser`` ("" on older rows)."""
    placed_by: str | None = None
    """The dashboard user who placed a browser call."""


class CallListOut(BaseModel):
    items: list[CallOut]
    total: int
    limit: int
    offset: int


class ChannelPeaksOut(BaseModel):
    min: list[float]
    max: list[float]


class WaveformOut(BaseModel):
    sample_rate: int
    duration_seconds: float
    points: int
    caller: ChannelPeaksOut
    agent: ChannelPeaksOut


def call_out(record: CallRecord, live: LiveCallInfo | None) -> CallOut:
    base = f"/api/calls/{record.call_sid}"
    has_recording = record.recording_path is not None
    has_transcript = record.transcript_path is not None
    return CallOut(
        call_sid=record.call_sid,
        stream_sid=record.stream_sid,
        from_number=record.from_number,
        to_number=record.to_number,
        persona=record.persona,
        provider=record.provider,
        status=record.status,
        live=live is not None,
        live_seconds=live.seconds if live is not None else None,
        started_at=record.started_at,
        model_ready_at=record.model_ready_at,
        ended_at=record.ended_at,
        duration_seconds=record.duration_seconds,
        end_reason=record.end_reason,
        ended_by=record.ended_by,
        model_socket_seconds=record.model_socket_seconds,
        first_agent_audio_seconds=record.first_agent_audio_seconds,
        error=record.error,
        files_expired_at=record.files_expired_at,
        replica=record.replica,
        sample_rate=record.sample_rate,
        files_stored_at=record.files_stored_at,
        recording_url=f"{base}/recording.wav" if has_recording else None,
        transcript_url=f"{base}/transcript.json" if has_transcript else None,
        transcript_vtt_url=f"{base}/transcript.vtt" if has_transcript else None,
        waveform_url=f"{base}/waveform.json" if has_recording else None,
        channel=record.channel,
        placed_by=record.placed_by,
    )


def parse_time_bound(value: str | None, *, end_of_day: bool) -> datetime | None:
    """An ISO date or datetime from a query string, as aware UTC.

    A bare date means the start of that UTC day; as an ``until`` bound
    (``end_of_day``) it means the day is included, i.e. the start of the next
    day, because the index's bound is exclusive (``started_at < until``).
    Naive datetimes are taken as UTC.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"not an ISO date: {text[:40]!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def api_router(
    index: CallIndex,
    data_dir: Path,
    live: Callable[[], Mapping[str, LiveCallInfo]],
    auth_dependency: AuthDependency,
    store: ObjectStore | None = None,
) -> APIRouter:
    """The ``/api/calls`` routes, every one behind ``auth_dependency``.

    ``store``: where files not on this replica's disk are read from (None: local only).
    """
    router = APIRouter(prefix="/api", dependencies=[Depends(auth_dependency)])
    peaks_cache = PeaksCache()

    async def load_record(call_sid: str) -> CallRecord:
        if not is_valid_call_sid(call_sid):
            raise HTTPException(status_code=404, detail="no such call")
        try:
            record = await index.get(call_sid)
        except StorageError as exc:
            log.warning("call index unavailable reading %s: %s", call_sid, exc)
            raise HTTPException(status_code=503, detail="call index unavailable") from exc
        if record is None:
            raise HTTPException(status_code=404, detail="no such call")
        return record

    def local_file(record: CallRecord, stored: str | None, what: str) -> Path | None:
        """The file on this replica's disk; None when it is not here (maybe in the store)."""
        if stored is None:
            raise HTTPException(status_code=404, detail=f"no {what} for this call")
        try:
            path = resolve_inside(data_dir, stored)
        except StorageError:
            if store is not None:
                return None  # another replica's data directory: the store has it
            # a row that points elsewhere is tampering or a bug: say so, serve nothing
            log.warning("call %s: %s path is outside the data directory", record.call_sid, what)
            raise HTTPException(status_code=404, detail=f"no {what} for this call") from None
        return path if path.is_file() else None

    async def remote_object(
        record: CallRecord, key: str, what: str
    ) -> tuple[ObjectStore, ObjectInfo]:
        """The call's object in the store, or 404 (none) / 503 (store unreachable)."""
        if store is None:
            raise HTTPException(status_code=404, detail=f"no {what} for this call")
        try:
            info = await store.stat(key)
        except StorageError as exc:
            log.warning("call %s: object store unavailable: %s", record.call_sid, exc)
            raise HTTPException(status_code=503, detail="object store unavailable") from exc
        if info is None:
            raise HTTPException(status_code=404, detail=f"no {what} for this call")
        return store, info

    async def transcript_data(record: CallRecord) -> dict[str, Any]:
        path = local_file(record, record.transcript_path, "transcript")
        if path is not None:
            return await asyncio.to_thread(read_transcript, path)
        key = call_keys(record.call_sid, record.started_at).transcript
        source, _ = await remote_object(record, key, "transcript")
        try:
            raw = await source.read(key)
        except StorageError as exc:
            log.warning("call %s: object store unavailable: %s", record.call_sid, exc)
            raise HTTPException(status_code=503, detail="object store unavailable") from exc
        return parse_transcript(raw)

    async def remote_peaks(record: CallRecord, points: int) -> Peaks:
        key = call_keys(record.call_sid, record.started_at).recording
        source, _ = await remote_object(record, key, "recording")
        with tempfile.TemporaryDirectory(prefix="phonebridge-wave-") as scratch:
            copy = Path(scratch) / "recording.wav"
            try:
                await source.download(key, copy)
            except StorageError as exc:
                raise HTTPException(status_code=503, detail="object store unavailable") from exc
            return await asyncio.to_thread(wav_peaks, copy, points)

    def read_transcript(path: Path) -> dict[str, Any]:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise HTTPException(status_code=404, detail="transcript unreadable") from exc
        return parse_transcript(raw)

    def parse_transcript(raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise HTTPException(status_code=404, detail="transcript unreadable") from exc
        if not isinstance(data, dict):
            raise HTTPException(status_code=404, detail="transcript unreadable")
        return data

    @router.get("/calls", response_model=CallListOut)
    async def list_calls(
        *,
        number: str | None = None,
        persona: str | None = None,
        since: str | None = None,
        until: str | None = None,
        end_reason: str | None = None,
        status: CallStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=CallQuery.MAX_LIMIT)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> CallListOut:
        query = CallQuery(
            number=number or None,
            persona=persona or None,
            since=parse_time_bound(since, end_of_day=False),
            until=parse_time_bound(until, end_of_day=True),
            end_reason=end_reason or None,
            status=status,
            limit=limit,
            offset=offset,
        )
        try:
            page = await index.list_calls(query)
        except StorageError as exc:
            log.warning("call index unavailable listing calls: %s", exc)
            raise HTTPException(status_code=503, detail="call index unavailable") from exc
        running = live()
        items = [call_out(record, running.get(record.call_sid)) for record in page.items]
        return CallListOut(items=items, total=page.total, limit=limit, offset=offset)

    @router.get("/calls/{call_sid}", response_model=CallOut)
    async def get_call(call_sid: str) -> CallOut:
        record = await load_record(call_sid)
        return call_out(record, live().get(call_sid))

    @router.get("/calls/{call_sid}/recording.wav", response_class=FileResponse)
    async def recording(call_sid: str, request: Request) -> Response:
        record = await load_record(call_sid)
        path = local_file(record, record.recording_path, "recording")
        # no-cache: a live call's file grows, so a cached copy would be short
        headers = {"Cache-Control": "private, no-cache"}
        if path is not None:
            return FileResponse(
                path,
                media_type="audio/wav",
                headers=headers,
                content_disposition_type="inline",
                filename=f"{call_sid}.wav",
            )
        key = call_keys(record.call_sid, record.started_at).recording
        source, info = await remote_object(record, key, "recording")
        headers["Content-Disposition"] = f'inline; filename="{call_sid}.wav"'
        return object_response(
            source,
            key,
            info,
            range_header=request.headers.get("range"),
            if_range=request.headers.get("if-range"),
            media_type="audio/wav",
            headers=headers,
        )

    @router.get("/calls/{call_sid}/transcript.json")
    async def transcript_json(call_sid: str) -> JSONResponse:
        record = await load_record(call_sid)
        return JSONResponse(await transcript_data(record))

    @router.get("/calls/{call_sid}/transcript.vtt", response_class=PlainTextResponse)
    async def transcript_vtt(call_sid: str) -> PlainTextResponse:
        record = await load_record(call_sid)
        data = await transcript_data(record)
        try:
            text = transcript_to_vtt(data)
        except (KeyError, TypeError) as exc:
            raise HTTPException(status_code=404, detail="transcript unreadable") from exc
        return PlainTextResponse(text, media_type="text/vtt; charset=utf-8")

    @router.get("/calls/{call_sid}/waveform.json", response_model=WaveformOut)
    async def waveform(
        call_sid: str, points: Annotated[int, Query(ge=16, le=8000)] = 1200
    ) -> WaveformOut:
        record = await load_record(call_sid)
        path = local_file(record, record.recording_path, "recording")
        try:
            if path is not None:
                peaks = await asyncio.to_thread(peaks_cache.peaks, path, points)
            else:
                peaks = await remote_peaks(record, points)
        except (OSError, StorageError, ValueError) as exc:
            log.warning("call %s: cannot read recording for waveform: %s", call_sid, exc)
            raise HTTPException(status_code=404, detail="recording unreadable") from exc
        silent = ChannelPeaksOut(min=[], max=[])
        channels = [
            ChannelPeaksOut(min=list(c.minimum), max=list(c.maximum)) for c in peaks.channels
        ]
        caller = channels[0] if channels else silent
        agent = channels[1] if len(channels) > 1 else silent
        return WaveformOut(
            sample_rate=peaks.sample_rate,
            duration_seconds=peaks.duration_seconds,
            points=len(caller.min),
            caller=caller,
            agent=agent,
        )

    return router


__all__ = [
    "CallListOut",
    "CallOut",
    "LiveCallInfo",
    "WaveformOut",
    "api_router",
    "call_out",
    "live_calls",
    "parse_time_bound",
]
