"""Operating the bridge: metrics after real calls, and the drain on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL, LocalBridge
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from .conftest import BridgeFactory, serve_process, tone_mulaw

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


async def test_sigterm_drains_calls_then_exits(tmp_path: Path) -> None:
    async with PersonaPlexSimulator(flavour="self-hosted", reply="echo") as sim:
        serve = serve_process(tmp_path, sim.url)
        local = serve.url
        server = await serve.start("--drain-seconds", "0.5")
        try:
            async with httpx.AsyncClient() as http, asyncio.timeout(30):
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
    record = await serve.record(report.call_sid)
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
        lease = await bridge.app.state.deps.bridge.admission.acquire("personaplex", None)
        assert (await http.get(bridge.url + "/readyz")).status_code == 503
        lease.release()
        assert (await http.get(bridge.url + "/readyz")).status_code == 200
