"""`phonebridge serve --workers 2`: each call stays with the worker that answered it.

A real supervisor and two real worker processes on loopback, two self-hosted
simulators (one per worker), the phone simulator standing in for Twilio and
the proxy (it sends the stream to the worker whose port took the webhook, as
deploy/Caddyfile.workers routes ``/twilio/r/w<N>/``: a worker is a replica on
one host).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from phonebridge.config import Settings, SettingsError
from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign
from phonebridge.workers import plan_workers

from .conftest import serve_process, tone_mulaw

SHAKSHUKA = "+14165550102"  # self-hosted, no overflow
BASE: dict[str, object] = {
    "public_url": "https://bridge.example.com",
    "twilio_auth_token": "test-token",
}


def test_a_worker_keeps_its_stream_and_action_under_its_own_path() -> None:
    single = Settings.from_env({}, **BASE)
    assert single.stream_url == "wss://bridge.example.com/twilio/media"
    assert single.action_url == "https://bridge.example.com/twilio/stream-ended"
    worker = Settings.from_env({"PHONEBRIDGE_WORKER": "3"}, **BASE)
    assert worker.stream_url == "wss://bridge.example.com/twilio/r/w3/media"
    assert worker.action_url == "https://bridge.example.com/twilio/r/w3/stream-ended"


def _args(**given: object) -> argparse.Namespace:
    fields = {"host": None, "public_url": None, "personas": None, "data": None}
    return argparse.Namespace(**{**fields, "drain_seconds": 30.0, "withdraw_seconds": 0.0, **given})


def test_workers_split_the_servers_ports_and_call_cap() -> None:
    settings = Settings.from_env(
        {},
        **BASE,
        personaplex_urls=("ws://gpu1", "ws://gpu2", "ws://gpu3"),
        max_calls=5,
        port=9000,
    )
    plans = plan_workers(_args(), settings, 2, {"KEEP": "1"})
    assert [plan.port for plan in plans] == [9000, 9001]
    urls = [plan.argv[plan.argv.index("--personaplex-urls") + 1] for plan in plans]
    assert urls == ["ws://gpu1,ws://gpu3", "ws://gpu2"]  # each server has one owner
    assert all(plan.argv[plan.argv.index("--max-calls") + 1] == "3" for plan in plans)
    assert [plan.env["PHONEBRIDGE_WORKER"] for plan in plans] == ["0", "1"]
    assert all(plan.env["KEEP"] == "1" for plan in plans)


def test_more_workers_than_self_hosted_servers_is_refused() -> None:
    settings = Settings.from_env({}, **BASE, personaplex_urls=("ws://gpu1",))
    with pytest.raises(SettingsError, match="--workers 2 needs at least 2"):
        plan_workers(_args(), settings, 2, {})


async def _healthy(http: httpx.AsyncClient, url: str) -> None:
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)


async def test_two_workers_each_carry_their_own_calls(tmp_path: Path) -> None:
    async with (
        PersonaPlexSimulator(flavour="self-hosted", reply="echo", conditioning_delay=0.05) as a,
        PersonaPlexSimulator(flavour="self-hosted", reply="echo", conditioning_delay=0.05) as b,
    ):
        serve = serve_process(tmp_path, f"{a.url},{b.url}")
        supervisor = await serve.start("--workers", "2", "--drain-seconds", "1")
        workers = [serve.url, f"http://127.0.0.1:{serve.port + 1}"]
        try:
            async with httpx.AsyncClient() as http:
                await _healthy(http, workers[1])
            reports = await asyncio.gather(
                *(
                    dial(
                        worker,
                        to=SHAKSHUKA,
                        auth_token=DEMO_AUTH_TOKEN,
                        public_url=PUBLIC_URL,
                        audio=tone_mulaw(1.0),
                        tail=0.5,
                    )
                    for worker in workers
                )
            )
            for n, report in enumerate(reports):
                assert report.ok, report.protocol_errors
                assert report.stream_url == f"wss://bridge.phonebridge.invalid/twilio/r/w{n}/media"
                assert report.frames_received > 0  # the model's echo came back
            # Each worker leased its own server: one session on each simulator.
            assert len(a.connections) == 1
            assert len(b.connections) == 1
            # Worker 1 has no route for worker 0's stream: the proxy must send it home.
            stream = "wss://bridge.phonebridge.invalid/twilio/r/w0/media"
            with pytest.raises(InvalidStatus):
                async with connect(
                    workers[1].replace("http://", "ws://") + "/twilio/r/w0/media",
                    additional_headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, stream, {})},
                ):
                    pass
            supervisor.send_signal(signal.SIGTERM)
            assert await supervisor.wait() == 0
        finally:
            if supervisor.returncode is None:
                supervisor.kill()
                await supervisor.wait()
    for report in reports:
        record = await serve.record(report.call_sid)
        assert record is not None
        assert record.end_reason == "caller_hangup"
