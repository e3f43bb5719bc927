"""The call-history API after real simulated calls through the bridge on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import wave
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from phonebridge.local import LocalBridge
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import resolve_inside
from phonebridge.storage.models import CallUpdate

from .conftest import CITYSAN, SHAKSHUKA, TOKEN, BridgeFactory, place_call

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def client(bridge: LocalBridge, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=bridge.url, headers=headers or BEARER, timeout=10)


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


async def test_list_detail_filters_and_pagination(bridge: LocalBridge) -> None:
    first = await place_call(bridge, CITYSAN, from_="+15005550001")
    second = await place_call(bridge, SHAKSHUKA, from_="+15005550002")
    async with client(bridge) as http:
        listing = (await http.get("/api/calls")).json()
        assert listing["total"] == 2
        # newest first
        assert [c["call_sid"] for c in listing["items"]] == [second.call_sid, first.call_sid]
        item = listing["items"][1]
        assert item["from_number"] == "+15005550001"
        assert item["to_number"] == CITYSAN
        assert item["persona"] == "citysan"
        assert item["status"] == "ended"
        assert item["live"] is False
        assert item["end_reason"] == first.end_reason
        assert item["recording_url"] == f"/api/calls/{first.call_sid}/recording.wav"
        assert "recording_path" not in item  # no server paths leak out

        by_number = (await http.get("/api/calls", params={"number": "550002"})).json()
        assert [c["call_sid"] for c in by_number["items"]] == [second.call_sid]
        by_persona = (await http.get("/api/calls", params={"persona": "citysan"})).json()
        assert [c["call_sid"] for c in by_persona["items"]] == [first.call_sid]
        by_reason = await http.get("/api/calls", params={"end_reason": first.end_reason})
        assert by_reason.json()["total"] == 2
        assert (await http.get("/api/calls", params={"end_reason": "nope"})).json()["total"] == 0
        day = first.started_at.date().isoformat()
        same_day = await http.get("/api/calls", params={"since": day, "until": day})
        assert same_day.json()["total"] == 2  # a bare `until` date includes that day
        later = (first.started_at + timedelta(days=1)).date().isoformat()
        assert (await http.get("/api/calls", params={"since": later})).json()["total"] == 0
        after_first = second.started_at.isoformat()
        since_second = (await http.get("/api/calls", params={"since": after_first})).json()
        assert [c["call_sid"] for c in since_second["items"]] == [second.call_sid]
        assert (await http.get("/api/calls", params={"status": "live"})).json()["total"] == 0
        assert (await http.get("/api/calls", params={"since": "yesterday"})).status_code == 422

        page1 = (await http.get("/api/calls", params={"limit": 1})).json()
        page2 = (await http.get("/api/calls", params={"limit": 1, "offset": 1})).json()
        assert (page1["total"], page2["total"]) == (2, 2)
        assert page1["items"][0]["call_sid"] == second.call_sid
        assert page2["items"][0]["call_sid"] == first.call_sid
        assert (await http.get("/api/calls", params={"limit": 0})).status_code == 422
        assert (await http.get("/api/calls", params={"offset": -1})).status_code == 422

        detail = (await http.get(f"/api/calls/{first.call_sid}")).json()
        assert detail["call_sid"] == first.call_sid
        assert detail["duration_seconds"] == pytest.approx(first.duration_seconds)
        assert detail["model_socket_seconds"] == pytest.approx(first.model_socket_seconds)
        missing = "CA" + "0" * 32
        assert (await http.get(f"/api/calls/{missing}")).status_code == 404


async def test_recording_supports_range_requests(bridge: LocalBridge) -> None:
    record = await place_call(bridge, CITYSAN)
    assert record.recording_path is not None
    on_disk = resolve_inside(bridge.settings.data_dir, record.recording_path).read_bytes()
    url = f"/api/calls/{record.call_sid}/recording.wav"
    async with client(bridge) as http:
        whole = await http.get(url)
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "audio/wav"
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.content == on_disk
        size = len(on_disk)

        part = await http.get(url, headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-1099/{size}"
        assert part.content == on_disk[100:1100]

        tail = await http.get(url, headers={"Range": "bytes=-500"})
        assert tail.status_code == 206
        assert tail.content == on_disk[-500:]
        open_ended = await http.get(url, headers={"Range": f"bytes={size - 10}-"})
        assert open_ended.content == on_disk[-10:]

        beyond = await http.get(url, headers={"Range": f"bytes={size}-{size + 10}"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{size}"
        malformed = await http.get(url, headers={"Range": "bytes=abc"})
        assert malformed.status_code in (400, 416)
    with wave.open(str(resolve_inside(bridge.settings.data_dir, record.recording_path))) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)


async def test_transcript_json_vtt_and_waveform(bridge: LocalBridge) -> None:
    record = await place_call(bridge, CITYSAN, tail=2.5)
    assert record.transcript_path is not None
    stored = json.loads(
        resolve_inside(bridge.settings.data_dir, record.transcript_path).read_text()
    )
    base = f"/api/calls/{record.call_sid}"
    async with client(bridge) as http:
        as_json = await http.get(f"{base}/transcript.json")
        assert as_json.status_code == 200
        assert as_json.json() == stored
        assert any(u["speaker"] == "agent" for u in stored["utterances"])
        as_vtt = await http.get(f"{base}/transcript.vtt")
        assert as_vtt.headers["content-type"].startswith("text/vtt")
        assert as_vtt.text.startswith("WEBVTT\n\n")
        assert "<v Agent>" in as_vtt.text

        waveform = (await http.get(f"{base}/waveform.json", params={"points": 200})).json()
        assert waveform["sample_rate"] == 8000
        assert waveform["points"] == 200
        assert len(waveform["caller"]["max"]) == len(waveform["agent"]["min"]) == 200
        # the caller sent a 0.3-level tone, and the agent greeted: both lanes have signal
        assert max(waveform["caller"]["max"]) == pytest.approx(0.3, abs=0.05)
        assert max(waveform["agent"]["max"]) > 0.01
        assert all(
            lo <= hi
            for lo, hi in zip(waveform["caller"]["min"], waveform["caller"]["max"], strict=True)
        )
        assert (await http.get(f"{base}/waveform.json", params={"points": 1})).status_code == 422


async def test_auth_is_required_but_not_for_twilio(bridge: LocalBridge) -> None:
    record = await place_call(bridge, CITYSAN)
    urls = [
        "/",
        "/api/calls",
        f"/api/calls/{record.call_sid}",
        f"/api/calls/{record.call_sid}/recording.wav",
        f"/api/calls/{record.call_sid}/transcript.json",
        f"/api/calls/{record.call_sid}/transcript.vtt",
        f"/api/calls/{record.call_sid}/waveform.json",
        f"/calls/{record.call_sid}",
        "/static/dashboard.css",
    ]
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as http:
        for url in urls:
            refused = await http.get(url)
            assert refused.status_code == 401, url
            assert refused.headers["www-authenticate"].startswith('Basic realm="phonebridge"')
            for wrong in (
                {"Authorization": "Bearer nope"},
                {"Authorization": f"Bearer {TOKEN}x"},
                basic("admin", "nope"),
                {"Authorization": f"Basic {TOKEN}"},  # not base64 of user:password
                {"Authorization": TOKEN},
            ):
                assert (await http.get(url, headers=wrong)).status_code == 401, (url, wrong)
            assert (await http.get(url, headers=BEARER)).status_code == 200, url
            assert (await http.get(url, headers=basic("anyone", TOKEN))).status_code == 200
            assert (await http.get(url, headers=basic("", TOKEN))).status_code == 200
        # the Twilio webhook answers (signature check, not dashboard auth)
        assert (await http.post("/twilio/voice", data={})).status_code != 401
        assert (await http.get("/healthz")).status_code == 200


async def test_no_token_means_loopback_only(start_bridge: BridgeFactory) -> None:
    async with (
        start_bridge() as bridge,  # no dashboard token
        httpx.AsyncClient(base_url=bridge.url, timeout=10) as http,
    ):
        assert (await http.get("/api/calls")).status_code == 200  # we are on loopback
        assert (await http.get("/")).status_code == 200


async def test_paths_cannot_escape_and_nothing_is_listed(
    bridge: LocalBridge, tmp_path: Path
) -> None:
    record = await place_call(bridge, CITYSAN)
    secret = tmp_path / "outside.wav"
    secret.write_bytes(b"RIFF-not-yours")
    async with client(bridge) as http:
        for url in (
            "/api/calls/..%2F..%2Fetc%2Fpasswd",
            "/api/calls/..%2Fcalls.db/recording.wav",
            "/api/calls/%2E%2E/recording.wav",
            f"/api/calls/{record.call_sid}%2F..%2F..%2Fcalls.db",
            f"/api/calls/{record.call_sid.upper()}/recording.wav",
            f"/api/calls/{record.call_sid}%00/recording.wav",
            "/api/calls/CA..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd/recording.wav",
            f"/api/calls/{record.call_sid}/../../calls.db",
            f"/api/calls/{record.call_sid}/recording.mp3",
            "/recordings/",
            "/api/",
            "/static/",
            "/static/..%2Fapi.py",
            "/static/%2E%2E%2Fapi.py",
            "/calls/",
            "/calls/..%2F..%2Fcalls.db",
            "/data/",
        ):
            response = await http.get(url)
            assert response.status_code in (400, 404, 405), (url, response.status_code)
            assert b"RIFF" not in response.content
            assert b"SQLite" not in response.content
        # the only "listing" is the call list itself: a trailing slash redirects to it
        slash = await http.get("/api/calls/")
        assert (slash.status_code, slash.headers["location"]) == (307, f"{bridge.url}/api/calls")

        # a row whose stored paths point outside the data directory serves nothing
        index = await CallIndex.create(bridge.settings.effective_database_url)
        try:
            await index.update(
                record.call_sid,
                CallUpdate(recording_path=str(secret), transcript_path="../../outside.json"),
            )
        finally:
            await index.close()
        for suffix in ("recording.wav", "transcript.json", "transcript.vtt", "waveform.json"):
            response = await http.get(f"/api/calls/{record.call_sid}/{suffix}")
            assert response.status_code == 404, suffix
            assert b"not-yours" not in response.content


async def test_a_call_in_progress_is_marked_live(bridge: LocalBridge) -> None:
    calling = asyncio.create_task(place_call(bridge, CITYSAN, tail=3.0))
    async with client(bridge) as http:
        async with asyncio.timeout(20):
            while True:
                items = (await http.get("/api/calls")).json()["items"]
                if items and items[0]["live"]:
                    break
                assert not calling.done(), "the call ended before it was ever seen live"
                await asyncio.sleep(0.05)
        assert items[0]["status"] == "live"
        assert items[0]["live_seconds"] >= 0
        record = await calling
        after = (await http.get(f"/api/calls/{record.call_sid}")).json()
        assert after["live"] is False
        assert after["live_seconds"] is None
