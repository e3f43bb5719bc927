"""Recordings and transcripts on shared object storage (S3), served by any replica.

S3 here is moto's threaded server (``moto[server]``, tests/realservers/moto_s3.py):
a TEST DOUBLE of Amazon S3 that speaks the real S3 HTTP API (SigV4-signed REST,
Range GETs, multipart uploads), started in-process on 127.0.0.1. The bridge's
S3 client (boto3) is the real one, talking HTTP to it; nothing leaves loopback.

Covered: upload at call end; leftovers after a crash (repaired, then
uploaded); serving with Range from a replica whose data directory does not
hold the file; S3 down at call end (the spool keeps the file, the row
survives, a later pass uploads it); retention deleting from the store too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request

from phonebridge.storage.archive import Archiver
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_keys, call_paths
from phonebridge.storage.models import CRASHED, CallEnd, CallStart, CallStatus
from phonebridge.storage.objects import LocalObjectStore, S3ObjectStore, S3Settings
from phonebridge.storage.recording import wav_header
from phonebridge.storage.retention import apply_retention
from phonebridge.storage.transcript import TranscriptBuilder
from phonebridge.web.api import api_router

from ..realservers.moto_s3 import (
    ACCESS_KEY_ID,
    BUCKET,
    REGION,
    SECRET_ACCESS_KEY,
    MotoS3,
)
from ..realservers.ports import free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def sid(n: int) -> str:
    return f"CA{n:032x}"


def s3_store(endpoint: str, prefix: str = "calls/") -> S3ObjectStore:
    return S3ObjectStore(
        S3Settings(
            bucket=BUCKET,
            prefix=prefix,
            endpoint_url=endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            max_attempts=1,
            connect_timeout=1.0,
        )
    )


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server


@pytest.fixture
async def store(moto_s3: MotoS3) -> S3ObjectStore:
    # moto keeps one bucket for the module: a prefix per test keeps tests apart
    made = s3_store(moto_s3.url, prefix=f"t{uuid.uuid4().hex[:12]}/")
    client = made._client
    await asyncio.to_thread(client.create_bucket, Bucket=BUCKET)
    return made


@pytest.fixture
async def index(database_url: str) -> AsyncIterator[CallIndex]:
    idx = await CallIndex.create(database_url, replica="r0")
    try:
        yield idx
    finally:
        await idx.close()


def recording_bytes(seconds: float, *, header_frames: int | None = None) -> bytes:
    """A stereo 8 kHz WAV; ``header_frames=0`` is what a killed recorder leaves."""
    frames = int(8000 * seconds)
    audio = (np.arange(frames * 2, dtype=np.int64) % 2000 - 1000).astype("<i2")
    declared = frames if header_frames is None else header_frames
    return wav_header(8000, declared * 4) + audio.tobytes()


async def add_call(
    index: CallIndex,
    data_dir: Path,
    n: int,
    *,
    ended_at: datetime | None,
    seconds: float = 1.0,
    header_frames: int | None = None,
) -> tuple[Path, Path]:
    started = T0 + timedelta(minutes=n)
    paths = call_paths(data_dir, sid(n), started)
    paths.recording.parent.mkdir(parents=True, exist_ok=True)
    paths.transcript.parent.mkdir(parents=True, exist_ok=True)
    paths.recording.write_bytes(recording_bytes(seconds, header_frames=header_frames))
    transcript = TranscriptBuilder(sid(n))
    transcript.agent_text("Hello, how can I help?", 0.5)
    transcript.write(paths.transcript)
    await index.start_call(
        CallStart(
            call_sid=sid(n),
            started_at=started,
            status=CallStatus.LIVE,
            recording_path=str(paths.recording),
            transcript_path=str(paths.transcript),
        )
    )
    if ended_at is not None:
        await index.finish_call(sid(n), CallEnd(ended_at=ended_at, end_reason="caller_hangup"))
    return paths.recording, paths.transcript


async def test_files_are_uploaded_when_the_call_ends(
    index: CallIndex, store: S3ObjectStore, tmp_path: Path
) -> None:
    data = tmp_path / "r0"
    recording, transcript = await add_call(index, data, 1, ended_at=T0 + timedelta(minutes=2))
    await add_call(index, data, 2, ended_at=None)  # still live: not uploaded
    archiver = Archiver(index, store, data, clock=lambda: T0 + timedelta(minutes=3))

    report = await archiver.store_recent()

    assert report.stored == [sid(1)]
    assert report.failed == []
    keys = call_keys(sid(1), T0 + timedelta(minutes=1))
    assert await store.read(keys.recording) == recording.read_bytes()
    assert await store.read(keys.transcript) == transcript.read_bytes()
    head = await asyncio.to_thread(
        store._client.head_object, Bucket=BUCKET, Key=store._prefix + keys.recording
    )
    assert head["ContentType"] == "audio/wav"
    row = await index.get(sid(1))
    assert row is not None
    assert row.files_stored_at == T0 + timedelta(minutes=3)
    assert recording.exists()  # the spool copy stays for this replica's own serving
    assert await store.stat(call_keys(sid(2), T0 + timedelta(minutes=2)).recording) is None
    assert (await archiver.store_recent()).stored == []  # nothing twice


async def test_leftovers_are_repaired_and_uploaded_after_a_crash(
    database_url: str, store: S3ObjectStore, tmp_path: Path
) -> None:
    data = tmp_path / "r0"
    # r0 dies mid-call: two live rows whose WAV headers still say 0 frames
    async with await CallIndex.create(database_url, replica="r0") as before_crash:
        own, _ = await add_call(before_crash, data, 1, ended_at=None, seconds=2, header_frames=0)
        other, _ = await add_call(before_crash, data, 2, ended_at=None, seconds=3, header_frames=0)
    # a survivor marks one of them (it cannot reach r0's disk, so no repair there)
    async with await CallIndex.create(database_url, replica="r1") as survivor:
        assert await survivor.mark_crashed_replicas({"r1"}, T0 + timedelta(minutes=5)) == [
            sid(1),
            sid(2),
        ]
    # r0 restarts: its leftovers go up, repaired
    async with await CallIndex.create(database_url, replica="r0") as restarted:
        assert await restarted.mark_interrupted_calls(T0 + timedelta(hours=1), data_dir=data) == []
        report = await Archiver(restarted, store, data).store_leftovers()
        assert sorted(report.stored) == [sid(1), sid(2)]
        for n, path, seconds in ((1, own, 2), (2, other, 3)):
            row = await restarted.get(sid(n))
            assert row is not None
            assert row.end_reason == CRASHED
            assert row.files_stored_at is not None
            copy = tmp_path / f"copy{n}.wav"
            await store.download(call_keys(sid(n), row.started_at).recording, copy)
            assert copy.read_bytes() == path.read_bytes()
            with wave.open(str(copy)) as w:
                assert w.getnframes() == 8000 * seconds


async def test_s3_down_at_call_end_keeps_the_spool_and_retries(
    index: CallIndex, tmp_path: Path
) -> None:
    data = tmp_path / "r0"
    recording, _ = await add_call(index, data, 1, ended_at=T0 + timedelta(minutes=2))
    port = free_port()
    archiver = Archiver(index, s3_store(f"http://127.0.0.1:{port}"), data, interval=0.05)

    down = await archiver.store_leftovers()
    assert [call for call, _ in down.failed] == [sid(1)]
    assert "s3://" in down.failed[0][1]
    assert SECRET_ACCESS_KEY not in down.failed[0][1]
    row = await index.get(sid(1))
    assert row is not None
    assert (row.status, row.end_reason, row.files_stored_at) == (
        CallStatus.ENDED,
        "caller_hangup",
        None,
    )
    assert recording.is_file()

    # the archiver's loop keeps retrying; S3 comes back on the same address
    task = asyncio.create_task(archiver.run_forever())
    try:
        await asyncio.sleep(0.2)
        with MotoS3(port) as back:
            revived = s3_store(back.url)
            await asyncio.to_thread(revived._client.create_bucket, Bucket=BUCKET)
            async with asyncio.timeout(30):
                while True:
                    stored = await index.get(sid(1))
                    if stored is not None and stored.files_stored_at is not None:
                        break
                    await asyncio.sleep(0.1)
            key = call_keys(sid(1), T0 + timedelta(minutes=1)).recording
            assert await revived.read(key) == recording.read_bytes()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def replica_app(index: CallIndex, data_dir: Path, store: S3ObjectStore | None) -> FastAPI:
    def allow(_: Request) -> None:
        return None

    app = FastAPI()
    app.include_router(api_router(index, data_dir, lambda: {}, allow, store=store))
    return app


async def test_another_replica_serves_the_recording_with_ranges_and_the_transcript(
    index: CallIndex, store: S3ObjectStore, tmp_path: Path
) -> None:
    recording, transcript = await add_call(
        index, tmp_path / "r0", 1, ended_at=T0 + timedelta(minutes=2)
    )
    await Archiver(index, store, tmp_path / "r0").store_leftovers()
    on_disk = recording.read_bytes()
    size = len(on_disk)
    # replica r1: its own, empty data directory; the row points into r0's
    app = replica_app(index, tmp_path / "r1", store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r1") as http:
        url = f"/api/calls/{sid(1)}/recording.wav"
        whole = await http.get(url)
        assert whole.status_code == 200
        assert whole.content == on_disk
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-type"] == "audio/wav"
        etag = whole.headers["etag"]

        part = await http.get(url, headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-1099/{size}"
        assert part.content == on_disk[100:1100]
        tail = await http.get(url, headers={"Range": "bytes=-500"})
        assert (tail.status_code, tail.content) == (206, on_disk[-500:])
        open_ended = await http.get(url, headers={"Range": f"bytes={size - 10}-"})
        assert open_ended.content == on_disk[-10:]
        clipped = await http.get(url, headers={"Range": f"bytes={size - 4}-{size + 100}"})
        assert clipped.headers["content-range"] == f"bytes {size - 4}-{size - 1}/{size}"
        beyond = await http.get(url, headers={"Range": f"bytes={size}-{size + 10}"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{size}"
        assert (await http.get(url, headers={"Range": "bytes=abc"})).status_code == 400
        several = await http.get(url, headers={"Range": "bytes=0-1,5-9"})
        assert (several.status_code, several.content) == (200, on_disk)
        fresh = await http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
        assert fresh.status_code == 206
        stale = await http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
        assert (stale.status_code, stale.content) == (200, on_disk)

        detail = (await http.get(f"/api/calls/{sid(1)}")).json()
        assert (detail["replica"], detail["sample_rate"]) == ("r0", 8000)
        assert detail["files_stored_at"] is not None
        doc = await http.get(f"/api/calls/{sid(1)}/transcript.json")
        assert doc.status_code == 200
        assert doc.json() == json.loads(transcript.read_text())
        vtt = await http.get(f"/api/calls/{sid(1)}/transcript.vtt")
        assert (vtt.status_code, vtt.text.splitlines()[0]) == (200, "WEBVTT")
        assert "Hello, how can I help?" in vtt.text
        wave_json = await http.get(f"/api/calls/{sid(1)}/waveform.json?points=16")
        assert wave_json.status_code == 200
        assert wave_json.json()["sample_rate"] == 8000
        assert wave_json.json()["duration_seconds"] == pytest.approx(1.0)

        # a call whose files never reached the store: 404, not someone else's file
        await add_call(index, tmp_path / "r0", 2, ended_at=T0 + timedelta(minutes=3))
        missing = await http.get(f"/api/calls/{sid(2)}/recording.wav")
        assert missing.status_code == 404

    # without a store, the same replica cannot serve it (today's single-process answer)
    alone = httpx.ASGITransport(app=replica_app(index, tmp_path / "r1", None))
    async with httpx.AsyncClient(transport=alone, base_url="http://r1") as http:
        assert (await http.get(f"/api/calls/{sid(1)}/recording.wav")).status_code == 404


async def test_a_store_that_is_down_answers_503(index: CallIndex, tmp_path: Path) -> None:
    await add_call(index, tmp_path / "r0", 1, ended_at=T0 + timedelta(minutes=2))
    dead = s3_store(f"http://127.0.0.1:{free_port()}")
    transport = httpx.ASGITransport(app=replica_app(index, tmp_path / "r1", dead))
    async with httpx.AsyncClient(transport=transport, base_url="http://r1") as http:
        for what in ("recording.wav", "transcript.json", "waveform.json"):
            response = await http.get(f"/api/calls/{sid(1)}/{what}")
            assert response.status_code == 503, what


async def test_retention_deletes_from_the_store_too(
    index: CallIndex, store: S3ObjectStore, tmp_path: Path
) -> None:
    data = tmp_path / "r0"
    now = T0 + timedelta(days=40)
    old = await add_call(index, data, 1, ended_at=T0 + timedelta(minutes=2))
    recent = await add_call(index, data, 2, ended_at=now - timedelta(days=1))
    await Archiver(index, store, data).store_leftovers()
    old_keys = call_keys(sid(1), T0 + timedelta(minutes=1))
    recent_keys = call_keys(sid(2), T0 + timedelta(minutes=2))

    # the store is down: nothing is forgotten half-deleted
    down = await apply_retention(
        index, data, 30, now, store=s3_store(f"http://127.0.0.1:{free_port()}")
    )
    assert [call for call, _ in down.refused] == [sid(1)]
    row = await index.get(sid(1))
    assert row is not None
    assert row.recording_path is not None

    report = await apply_retention(index, data, 30, now, store=store)

    assert report.expired_calls == [sid(1)]
    assert sorted(report.deleted_objects) == sorted([old_keys.recording, old_keys.transcript])
    assert await store.stat(old_keys.recording) is None
    assert await store.stat(old_keys.transcript) is None
    assert not old[0].exists()
    assert await store.stat(recent_keys.recording) is not None
    assert recent[0].exists()
    expired = await index.get(sid(1))
    assert expired is not None
    assert (expired.recording_path, expired.files_expired_at) == (None, now)


async def test_the_local_store_copies_atomically_and_serves_ranges(tmp_path: Path) -> None:
    source = tmp_path / "spool" / "a.wav"
    source.parent.mkdir()
    source.write_bytes(bytes(range(256)) * 4)
    local = LocalObjectStore(tmp_path / "shared")
    await local.put_file("recordings/2024/05/01/a.wav", source, "audio/wav")
    info = await local.stat("recordings/2024/05/01/a.wav")
    assert info is not None
    assert info.size == 1024
    chunks = [c async for c in local.iter_range("recordings/2024/05/01/a.wav", 10, 19)]
    assert b"".join(chunks) == source.read_bytes()[10:20]
    await local.delete("recordings/2024/05/01/a.wav")
    await local.delete("recordings/2024/05/01/a.wav")  # gone already: fine
    assert await local.stat("recordings/2024/05/01/a.wav") is None
    for bad in ("../escape.wav", "/abs.wav", "a//b.wav", ""):
        with pytest.raises(Exception, match="not an object key"):
            await local.stat(bad)
