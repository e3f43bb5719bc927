"""The post-call webhook end to end: a real call, the summary, its recording link, a crash.

The receiver is the webhook receiver test double on loopback, checking our
signature with the shared secret.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.webhook_receiver import WebhookReceiver
from phonebridge.storage.index import CallIndex
from phonebridge.storage.models import DeliveryState, OutboxEntry
from phonebridge.webhooks.outbox import Outbox
from phonebridge.webhooks.signing import recording_query

from ..realservers.ports import free_port
from .conftest import BridgeFactory, record_of, serve_process, tone_mulaw
from .test_call_path import SHAKSHUKA, call

SECRET = "summary-secret-e2e"


async def test_a_finished_call_is_summarised_signed_with_a_working_recording_link(
    start_bridge: BridgeFactory,
) -> None:
    async with (
        WebhookReceiver(secret=SECRET) as receiver,
        start_bridge(
            webhook_secret=SECRET, call_ended_webhook_url=receiver.url + "/calls"
        ) as bridge,
    ):
        report = await call(bridge, SHAKSHUKA)
        record = await record_of(bridge, report.call_sid)
        async with asyncio.timeout(10):
            [summary] = await receiver.wait_for(1)
        link = summary.json()["recording"]["url"].replace(bridge.public_url, bridge.url)
        expired = f"{bridge.url}/recordings/{report.call_sid}.wav?" + recording_query(
            SECRET, report.call_sid, time.time() - 120, 60
        )
        async with httpx.AsyncClient() as http:
            wav = await http.get(link)
            tampered = await http.get(link.replace("signature=", "signature=0"))
            stale = await http.get(expired)
            unsigned = await http.get(f"{bridge.url}/recordings/{report.call_sid}.wav")
            page = await http.get(f"{bridge.url}/calls/{report.call_sid}")
    assert summary.signature_ok is True
    assert summary.path == "/calls"
    body = summary.json()
    assert body["call"]["call_sid"] == report.call_sid
    assert body["call"]["end_reason"] == record.end_reason == "caller_hangup"
    assert body["durations"]["model_socket_seconds"] == record.model_socket_seconds
    assert wav.status_code == 200
    assert wav.content[:4] == b"RIFF"
    assert (tampered.status_code, stale.status_code, unsigned.status_code) == (403, 403, 403)
    # The call page shows the delivery, with the key the receiver saw.
    assert page.status_code == 200
    assert f'data-idempotency-key="{summary.headers["idempotency-key"]}"' in page.text
    assert '<tr class="delivery delivered"' in page.text


async def _deliveries(data: Path, call_sid: str) -> list[OutboxEntry]:
    index = await CallIndex.create(f"sqlite+aiosqlite:///{data / 'phonebridge.db'}")
    try:
        return await Outbox.of(index).for_call(call_sid)
    finally:
        await index.close()


async def test_kill_9_with_a_delivery_pending_delivers_it_after_the_restart(
    tmp_path: Path,
) -> None:
    receiver_port = free_port()  # where no receiver listens yet
    async with PersonaPlexSimulator(flavour="self-hosted", reply="echo") as sim:
        serve = serve_process(tmp_path, sim.url)
        serve.env["PHONEBRIDGE_WEBHOOK_SECRET"] = SECRET
        serve.env["PHONEBRIDGE_CALL_ENDED_WEBHOOK_URL"] = f"http://127.0.0.1:{receiver_port}/h"
        server = await serve.start()
        try:
            report = await dial(
                serve.url,
                to=SHAKSHUKA,
                auth_token=DEMO_AUTH_TOKEN,
                public_url=PUBLIC_URL,
                audio=tone_mulaw(0.5),
                tail=0.3,
            )
            async with asyncio.timeout(15):
                while True:  # the first attempt found nobody listening
                    pending = await _deliveries(serve.data, report.call_sid)
                    if pending and pending[0].attempts >= 1:
                        break
                    await asyncio.sleep(0.05)
            server.send_signal(signal.SIGKILL)
            await server.wait()
            async with WebhookReceiver(secret=SECRET, port=receiver_port) as receiver:
                server = await serve.start()
                async with asyncio.timeout(15):
                    [delivered] = await receiver.wait_for(1)
                    while True:
                        done = await _deliveries(serve.data, report.call_sid)
                        if done[0].state is DeliveryState.DELIVERED:
                            break
                        await asyncio.sleep(0.05)
        finally:
            server.send_signal(signal.SIGTERM)
            await server.wait()
    [entry] = await _deliveries(serve.data, report.call_sid)
    assert pending[0].state is DeliveryState.PENDING
    assert delivered.headers["idempotency-key"] == pending[0].id == entry.id
    assert delivered.signature_ok is True
    assert delivered.json()["attempt"] == entry.attempts >= 2
