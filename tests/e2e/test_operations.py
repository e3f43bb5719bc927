"""Operating the bridge: metrics after real calls, and the drain on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL, LocalBridge
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.storage.index import CallIndex
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from .conftest import REPO, BridgeFactory, tone_mulaw

SHAKSHUKA = "+14165550102"


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)"
    found = re.search("^" + pattern + "$", text, re.MULTILINE)
    assert found is not None, f"{name}{{{labels}}} not exported"
    return float(found.group(1))


async def test_metrics_after_a_call(bridge: LocalBridge) -> None:
    report = await dial(
        bridge.url,
        to=SHAKSHUKA,
        auth_token=DEMO_AUTH_TOKEN,
        public_url=bridge.public_url,
        audio=tone_mulaw(1.0),
        gaps=[(0.3, 0.4)],
        tail=0.3,
    )
    assert report.ok
    async with httpx.AsyncClient() as http:
        for _ in range(100):  # the teardown completes just after the phone hangs up
            text = (await http.get(bridge.url + "/metrics")).text
            if "phonebridge_active_calls 0.0" in text:
                break
            await asyncio.sleep(0.02)
    assert metric(text, "phonebridge_active_calls") == 0
    assert (
        metric(text, "phonebridge_calls_total", 'end_reason="caller_hangup",outcome="answered"')
        == 1
    )
    assert metric(text, "phonebridge_hangup_to_model_closed_seconds_count") == 1
    assert metric(text, "phonebridge_frame_processing_seconds_count", 'direction="inbound"') > 10
    assert metric(text, "phonebridge_frame_processing_seconds_count", 'direction="outbound"') > 0
    assert metric(text, "phonebridge_silence_frames_total") > 0  # the gap was filled
    assert metric(text, "phonebridge_model_socket_seconds_total", 'provider="personaplex"') > 0
    assert metric(text, "phonebridge_model_time_to_ready_seconds_count", 'provider="personaplex"')
    assert metric(text, "phonebridge_leases", 'state="free"') == 1
    assert metric(text, "phonebridge_leases", 'state="in_use"') == 0
    # Labels are fixed vocabularies: no phone number or SID ever becomes a series.
    assert SHAKSHUKA not in text
    assert report.call_sid not in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_sigterm_drains_calls_then_exits(tmp_path: Path) -> None:
    personas = tmp_path / "personas"
    shutil.copytree(REPO / "personas", personas)
    port = free_port()
    local = f"http://127.0.0.1:{port}"
    async with PersonaPlexSimulator(flavour="self-hosted", reply="echo") as sim:
        env = {
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("PHONEBRIDGE_", "TWILIO_"))
            },
            "PHONEBRIDGE_PUBLIC_URL": PUBLIC_URL,
            "TWILIO_AUTH_TOKEN": DEMO_AUTH_TOKEN,
            "PERSONAPLEX_URLS": sim.url,
            "POLARGRID_API_KEY": "pg_unused",
            "FAL_KEY": "fal-unused",
            "PHONEBRIDGE_PERSONAS": str(personas),
            "PHONEBRIDGE_DATA": str(tmp_path / "data"),
            "PHONEBRIDGE_PORT": str(port),
        }
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "phonebridge.cli", "serve", "--drain-seconds", "0.5", env=env
        )
        try:
            async with httpx.AsyncClient() as http, asyncio.timeout(30):
                while True:
                    try:
                        if (await http.get(local + "/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.05)
                phone = asyncio.create_task(
                    dial(
                        local,
                        to=SHAKSHUKA,
                        auth_token=DEMO_AUTH_TOKEN,
                        public_url=PUBLIC_URL,
                        audio=tone_mulaw(4.0),
                    )
                )
                await sim.wait_for_connections(1)
                await asyncio.sleep(0.3)
                server.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.1)
                # Draining: not ready, and a new call hears the busy message.
                assert (await http.get(local + "/readyz")).status_code == 503
                form = {"CallSid": "CA" + "7" * 32, "To": SHAKSHUKA, "From": "+15005550006"}
                url = PUBLIC_URL + "/twilio/voice"
                busy = await http.post(
                    local + "/twilio/voice",
                    data=form,
                    headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, url, form)},
                )
                assert "<Say" in busy.text
                assert "<Connect" not in busy.text
                report = await phone
                assert await server.wait() == 0
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()
    # The call was ended by the bridge at the deadline, with the fallback, on record.
    assert report.ended_by == "bridge"
    assert report.said, report.action_answer
    index = await CallIndex.create(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'phonebridge.db'}")
    try:
        record = await index.get(report.call_sid)
    finally:
        await index.close()
    assert record is not None
    assert record.end_reason == "drain"
    assert sim.connections[0].closed_at is not None


async def test_health_and_readiness(start_bridge: BridgeFactory, personas_dir: Path) -> None:
    # Only the self-hosted server configured: ready exactly while its lease is free.
    for overflowing in ("aerorentals.yaml", "citysan.yaml"):
        (personas_dir / overflowing).unlink()
    async with (
        start_bridge(polargrid_api_key=None, fal_key=None) as bridge,
        httpx.AsyncClient() as http,
    ):
        assert (await http.get(bridge.url + "/healthz")).status_code == 200
        assert (await http.get(bridge.url + "/readyz")).status_code == 200
        lease = bridge.app.state.deps.bridge.admission.acquire("personaplex", None)
        assert (await http.get(bridge.url + "/readyz")).status_code == 503
        lease.release()
        assert (await http.get(bridge.url + "/readyz")).status_code == 200
