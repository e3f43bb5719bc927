"""No secret leaves the process (issue 8, "Secrets"; ARCHITECTURE.md "Secrets").

Calls run through the real bridge with real-looking keys configured for every
secret setting, logging captured at DEBUG for *every* logger (websockets and
uvicorn included) through the production JSON handler, and with failures on
purpose: PolarGrid and fal refusing the key (401), a transcription service
that answers 500 and echoes the Authorization header back, a forged webhook.
Then no secret — raw, URL-encoded, or base64 in the ``user:key`` forms that
Authorization headers carry — may appear in any log line or logged traceback,
the /metrics body, the API's JSON, the dashboard's HTML, or any byte of any
file under the data directory (recordings, transcripts, the SQLite database
and its journal).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from phonebridge.config import LogFormat
from phonebridge.local import LocalBridge
from phonebridge.logs import configure_logging
from phonebridge.serve import secret_values

from .conftest import CITYSAN, BridgeFactory, call, record_of

ACCOUNT_SID = "AC" + "5f3e" * 8
SECRETS = {
    "twilio_auth_token": "9c1f4e7a2b8d6f0e3a5c7b9d1e2f4a6c",
    "polargrid_api_key": "pg_live_Zq3vR8xK2mN7pL4tW9yB6cH1dF5gJ0sA",
    "fal_key": "3f2a9c7e-1b4d-4e8f-a6c2-9d7b5e3f1a0c:8e4b2d6f0a9c7e5b3d1f",
    "dashboard_token": "dsh_Yw7+Qp2/Lm9=Rt4&Xs8",  # characters that URL-encode
    "transcribe_key": "sk-proj-H3kL9mP2qR7sT1vW5xY8zA4bC6dE0fG",
    "webhook_secret": "whsec_T8nQ2vX6zR4mK9pL1sD7fH3jB5",
}
POLARGRID_NUMBER = "+14165550107"
FAL_NUMBER = "+14165550108"


def leaked_forms(secret: str) -> set[str]:
    """Every way the secret could show up: raw, URL-encoded, base64 of auth forms."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    for pair in (secret, f"{secret}:", f":{secret}", f"{ACCOUNT_SID}:{secret}", f"api:{secret}"):
        forms.add(base64.b64encode(pair.encode()).decode())
        forms.add(base64.urlsafe_b64encode(pair.encode()).decode().rstrip("="))
    return forms


FORMS = {name: leaked_forms(value) for name, value in SECRETS.items()}


def leaks_in(text: str) -> list[str]:
    return [name for name, forms in FORMS.items() if any(form in text for form in forms)]


@pytest.fixture
def production_logs() -> Iterator[io.StringIO]:
    """The root logger as `phonebridge serve` configures it, at DEBUG, into a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    configure_logging(
        level="DEBUG", log_format=LogFormat.JSON, secrets=SECRETS.values(), stream=buffer
    )
    quiet = {name: logging.getLogger(name).level for name in ("websockets", "uvicorn")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


@pytest.fixture
def hosted_personas(personas_dir: Path) -> None:
    """Two personas answered by the hosted providers directly (no self-hosted first)."""
    template = (personas_dir / "teacher.yaml").read_text()
    for name, provider, number in (
        ("hosted_pg", "polargrid", POLARGRID_NUMBER),
        ("hosted_fal", "fal", FAL_NUMBER),
    ):
        text = template.replace('"+14165550104"', f'"{number}"')
        text = text.replace("provider: personaplex", f"provider: {provider}")
        (personas_dir / f"{name}.yaml").write_text(text.replace("recording: false", ""))


@contextlib.asynccontextmanager
async def transcriber(*, fail: bool) -> AsyncIterator[str]:
    """An OpenAI-style transcription endpoint; when failing, it echoes the key back."""
    app = FastAPI()

    @app.post("/v1/audio/transcriptions")
    async def transcribe(request: Request) -> JSONResponse:
        await request.body()
        if fail:  # the worst upstream: the error body quotes the credentials
            echoed = {"error": f"bad request, auth was {request.headers.get('authorization')}"}
            return JSONResponse(echoed, status_code=500)
        return JSONResponse({"text": "hello", "segments": []})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def transcription_done(logs: io.StringIO, since: int, calls: int) -> None:
    """Post-call transcription runs after the call row is final: wait for its requests."""

    def requests() -> int:
        lines = logs.getvalue()[since:].splitlines()
        return sum('"httpx"' in line and "/v1/audio/transcriptions" in line for line in lines)

    async with asyncio.timeout(20):
        while requests() < calls:  # noqa: ASYNC110 - the log is the only signal
            await asyncio.sleep(0.05)


def settings_with_secrets(transcribe_url: str) -> dict[str, Any]:
    return {
        **SECRETS,
        "twilio_account_sid": ACCOUNT_SID,
        "transcribe_url": transcribe_url,
        "transcribe_model": "whisper-1",
    }


async def exercise(bridge: LocalBridge) -> list[str]:
    """Calls to every provider, a forged webhook, and reads of the API; returns call SIDs."""
    token = SECRETS["twilio_auth_token"]
    sids = []
    for number in (CITYSAN, POLARGRID_NUMBER, FAL_NUMBER):
        sids.append((await call(bridge, number, auth_token=token)).call_sid)
    for sid in sids:
        await record_of(bridge, sid)
    async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as http:
        forged = await http.post(
            "/twilio/voice",
            data={"CallSid": "CA" + "1" * 32, "To": CITYSAN},
            headers={"X-Twilio-Signature": "Zm9yZ2Vk"},
        )
        assert forged.status_code == 403
        basic = base64.b64encode(f"ops:{SECRETS['dashboard_token']}".encode()).decode()
        assert (
            await http.get("/api/calls", headers={"Authorization": f"Basic {basic}"})
        ).is_success
    return sids


async def test_no_secret_in_logs_metrics_api_or_stored_files(
    start_bridge: BridgeFactory,
    hosted_personas: None,
    production_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    headers = {"Authorization": f"Bearer {SECRETS['dashboard_token']}"}
    texts: dict[str, str] = {}
    # Run 1: the hosted simulators accept our keys, transcription works.
    monkeypatch.setattr("phonebridge.local.DEMO_POLARGRID_KEY", SECRETS["polargrid_api_key"])
    monkeypatch.setattr("phonebridge.local.DEMO_FAL_KEY", SECRETS["fal_key"])
    since = 0
    async with transcriber(fail=False) as url, start_bridge(**settings_with_secrets(url)) as bridge:
        assert set(secret_values(bridge.settings)) == set(SECRETS.values())
        good = await exercise(bridge)
        await transcription_done(production_logs, since, len(good))
    # Run 2: the hosted providers refuse the keys (401), transcription fails loudly.
    monkeypatch.undo()
    since = len(production_logs.getvalue())
    async with transcriber(fail=True) as url, start_bridge(**settings_with_secrets(url)) as bridge:
        bad = await exercise(bridge)
        await transcription_done(production_logs, since, len(bad))
        async with httpx.AsyncClient(base_url=bridge.url, headers=headers, timeout=10) as http:
            texts["/metrics"] = (await http.get("/metrics")).text
            texts["/api/calls"] = (await http.get("/api/calls", params={"limit": 100})).text
            texts["/"] = (await http.get("/")).text
            for sid in good + bad:
                for suffix in ("", "/transcript.json", "/transcript.vtt"):
                    texts[f"/api/calls/{sid}{suffix}"] = (
                        await http.get(f"/api/calls/{sid}{suffix}")
                    ).text
                texts[f"/calls/{sid}"] = (await http.get(f"/calls/{sid}")).text
        data_dir = bridge.settings.data_dir

    # The failures really happened (else the error paths were not exercised).
    rows = json.loads(texts["/api/calls"])["items"]
    by_sid = {row["call_sid"]: row for row in rows}
    assert {by_sid[sid]["provider"] for sid in good} == {"personaplex", "polargrid", "fal"}
    assert all(by_sid[sid]["error"] is None for sid in good[1:]), [by_sid[s] for s in good]
    assert all(by_sid[sid]["error"] for sid in bad[1:]), [by_sid[s] for s in bad]
    assert "401" in " ".join(by_sid[sid]["error"] for sid in bad[1:])

    lines = production_logs.getvalue().splitlines()
    assert len(lines) > 100  # DEBUG from every logger, websockets and uvicorn included
    loggers = {json.loads(line)["logger"] for line in lines}
    assert any(
        name.startswith("websockets") or name.startswith("phonebridge.models") for name in loggers
    )
    # The echoed key reached the logs through the transcription error, masked.
    assert any("transcription" in line and "***" in line for line in lines)
    for line in lines:
        entry = json.loads(line)
        assert not leaks_in(line), line
        assert not leaks_in(entry["message"] + entry.get("error", "")), line
    for where, text in texts.items():
        assert not leaks_in(text), where
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert any(path.suffix == ".wav" for path in files)
    assert any(path.name.startswith("phonebridge.db") for path in files)
    for path in files:
        content = path.read_bytes().decode("latin-1")  # every byte, as one char each
        assert not leaks_in(content), path
