"""How the bridge frames audio on both sockets, seen from the wire (issue 7).

Both sockets carry the model's 80 ms step as one message: to Twilio, one
``media`` message per page the model sent (Twilio plays a payload of any size
in order, PROTOCOLS.md §1.3); to PersonaPlex, one Ogg page per step of caller
audio (the server steps on whole 80 ms, §2.3). Neither delays audio; both cut
the messages, JSON, base64 and socket writes per call to a quarter.
"""

from __future__ import annotations

import asyncio
import base64
import json

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge
from phonebridge.simulators.phone.raw import raw_stream

from .conftest import tone_mulaw

SHAKSHUKA = "+14165550102"  # self-hosted: the simulator sends one 80 ms page per step
FRAME = tone_mulaw(0.02)


async def test_each_model_step_is_one_message_on_both_sockets(bridge: LocalBridge) -> None:
    async with raw_stream(
        bridge.url, public_url=bridge.public_url, to=SHAKSHUKA, auth_token=DEMO_AUTH_TOKEN
    ) as stream:
        async with asyncio.timeout(10):
            while not bridge.self_hosted[0].connections or (
                bridge.self_hosted[0].connections[0].handshake_at is None
            ):
                await stream.media(FRAME)
                await asyncio.sleep(0.02)
            for n in range(60):  # 1.2 s of caller audio at real time
                await stream.media(FRAME, n * 20)
                await asyncio.sleep(0.02)
            await stream.stop()
            await stream.wait_closed()
    sent = [json.loads(message) for message in stream.received]
    payloads = [base64.b64decode(m["media"]["payload"]) for m in sent if m["event"] == "media"]
    assert len(payloads) >= 5
    assert {len(payload) for payload in payloads} == {640}  # 80 ms of 8 kHz mu-law each
    assert any(m["event"] == "mark" for m in sent)

    model = bridge.self_hosted[0].connections[0]
    audio_pages = model.input_messages - 1  # the first message is the Ogg headers
    assert audio_pages >= 10
    assert model.input_samples == audio_pages * 1920  # one whole 80 ms step per page
