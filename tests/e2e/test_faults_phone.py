"""Phone-side faults and bad input, end to end against the real bridge (issue 8).

Each test drives a signed Twilio stream by hand (:func:`raw_stream`), sends
what Twilio would not, and checks the defined outcome: how the call row
ended, that the model socket closed, that nothing leaked, and that the next
ordinary call is served.

Decisions (PROTOCOLS.md §1.2/§1.3):

- A frame Twilio would never send (binary, invalid JSON, a foreign
  ``streamSid``, an oversize message or payload) ends the call with
  ``protocol_error``: the bridge closes the stream, so Twilio asks the
  ``<Connect action>`` URL.
- A well-formed message with an *unknown event name* is ignored and counted:
  Twilio adds events over time (``dtmf`` came late), and dropping every live
  call the day it ships one is worse than skipping a message we cannot use.
- A second ``stop``, or anything after ``stop``, is ignored.
- A flood of media faster than real time is not an error; the input pacer
  drops the oldest frames so the model is still fed at real time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest

from phonebridge.local import DEMO_AUTH_TOKEN, LocalBridge
from phonebridge.simulators.personaplex.records import ConnectionRecord
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.raw import RawStream, raw_stream
from phonebridge.simulators.phone.twiml_reader import TwimlAnswer, read_twiml
from phonebridge.storage.models import CallRecord
from phonebridge.telephony.twilio.protocol import MAX_MEDIA_PAYLOAD_BYTES

from .conftest import record_of, tone_mulaw
from .leaks import Baseline, assert_no_leaks, baseline

SHAKSHUKA = "+14165550102"  # self-hosted, no overflow: one simulator sees every call
FRAME = tone_mulaw(0.02)


def open_call(
    bridge: LocalBridge, *, send_start: bool = True
) -> AbstractAsyncContextManager[RawStream]:
    return raw_stream(
        bridge.url,
        public_url=bridge.public_url,
        to=SHAKSHUKA,
        auth_token=DEMO_AUTH_TOKEN,
        send_start=send_start,
    )


async def model_ready(bridge: LocalBridge, index: int = 0) -> ConnectionRecord:
    """The model connection of call ``index`` once the bridge is feeding it audio."""
    async with asyncio.timeout(10):
        while True:
            connections = bridge.self_hosted[0].connections
            if len(connections) > index and connections[index].input_messages > 0:
                return connections[index]
            await asyncio.sleep(0.01)


async def talk(stream: RawStream, seconds: float) -> None:
    """Caller audio at real time."""
    for n in range(round(seconds / 0.02)):
        await stream.media(FRAME, n * 20)
        await asyncio.sleep(0.02)


async def bridge_ends_it(stream: RawStream, bridge: LocalBridge) -> tuple[TwimlAnswer, CallRecord]:
    """The bridge closes the stream; Twilio then asks the action URL, which must answer."""
    async with asyncio.timeout(10):
        await stream.wait_closed()
    action = await stream.ask_action()
    assert action.status_code == 200
    answer = read_twiml(action.text, action.headers.get("content-type"))  # valid TwiML
    return answer, await record_of(bridge, stream.call_sid)


async def still_serving(bridge: LocalBridge, leaks: Baseline) -> None:
    """Nothing leaked, and an ordinary call right after is answered and heard."""
    await assert_no_leaks(bridge, leaks)
    async with asyncio.timeout(30):
        report = await dial(
            bridge.url,
            to=SHAKSHUKA,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            audio=tone_mulaw(0.4),
            tail=0.2,
        )
    assert report.ok, report.protocol_errors
    assert report.frames_received > 0
    assert (await record_of(bridge, report.call_sid)).end_reason == "caller_hangup"
    await assert_no_leaks(bridge, leaks)


def model_closed(bridge: LocalBridge, index: int = 0) -> None:
    assert bridge.self_hosted[0].connections[index].closed_at is not None


# --------------------------------------------------------------------------- the caller's side


async def test_socket_dropped_without_stop(bridge: LocalBridge) -> None:
    leaks = baseline(bridge)
    async with open_call(bridge) as stream:
        await model_ready(bridge)
        await talk(stream, 0.2)
        # A TCP drop: no stop, no close handshake.
        stream.socket.transport.abort()
    record = await record_of(bridge, stream.call_sid)
    assert (record.end_reason, record.ended_by) == ("caller_dropped", "caller")
    model_closed(bridge)
    await still_serving(bridge, leaks)


async def test_stop_twice_and_media_after_stop_are_ignored(
    bridge: LocalBridge, caplog: pytest.LogCaptureFixture
) -> None:
    leaks = baseline(bridge)
    async with open_call(bridge) as stream:
        await model_ready(bridge)
        await talk(stream, 0.2)
        await stream.stop()
        await stream.stop()
        await stream.media(FRAME, 400)
        async with asyncio.timeout(10):
            await stream.wait_closed()
    record = await record_of(bridge, stream.call_sid)
    assert (record.end_reason, record.ended_by) == ("caller_hangup", "caller")
    assert record.error is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    model_closed(bridge)
    await still_serving(bridge, leaks)


async def test_media_before_start_is_refused_and_the_reservation_freed_at_once(
    bridge: LocalBridge,
) -> None:
    leaks = baseline(bridge)  # the default 15 s pending deadline: not what frees it
    async with open_call(bridge, send_start=False) as stream:
        await stream.send(stream.writer.connected())
        await stream.media(FRAME, 0)
        async with asyncio.timeout(10):
            assert await stream.wait_closed() == 1008  # policy violation
        # The stream never claimed its call; Twilio asks the action URL with the
        # caller still on the line: the persona's fallback, and the reservation's
        # model socket (billed) closed now rather than at the pending deadline.
        action = await stream.ask_action()
        assert action.status_code == 200
        answer = read_twiml(action.text, action.headers.get("content-type"))
        assert answer.said, answer.verbs
        model_closed(bridge)
    record = await record_of(bridge, stream.call_sid)
    assert record.end_reason == "no_stream"
    await still_serving(bridge, leaks)


# --------------------------------------------------------------------------- protocol errors


def _media_with(stream: RawStream, **changes: object) -> str:
    doc = json.loads(stream.writer.media(FRAME, 0))
    doc.update(changes)
    return json.dumps(doc)


BAD_FRAMES: dict[str, Callable[[RawStream], str | bytes]] = {
    "malformed json": lambda s: '{"event": "media", "streamSid": ',
    "binary frame": lambda s: s.writer.media(FRAME, 0).encode(),
    "wrong streamSid": lambda s: _media_with(s, streamSid="MZ" + "0" * 32),
    "json array": lambda s: "[]",
    "event not a string": lambda s: _media_with(s, event=7),
    "oversize payload": lambda s: _media_with(
        s,
        media={
            "track": "inbound",
            "chunk": "1",
            "timestamp": "0",
            "payload": base64.b64encode(b"\xff" * (MAX_MEDIA_PAYLOAD_BYTES + 1)).decode(),
        },
    ),
    # Over the 64 KiB message limit, which is also uvicorn's ws_max_size: the
    # server refuses the frame (close 1009) before the protocol sees it.
    "oversize message": lambda s: _media_with(s, padding="x" * (1 << 16)),
}


@pytest.mark.parametrize("bad", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_bad_frame_ends_the_call_with_protocol_error(
    bridge: LocalBridge, bad: Callable[[RawStream], str | bytes], caplog: pytest.LogCaptureFixture
) -> None:
    leaks = baseline(bridge)
    async with open_call(bridge) as stream:
        await model_ready(bridge)
        await talk(stream, 0.1)
        await stream.send(bad(stream))
        answer, record = await bridge_ends_it(stream, bridge)
    assert (record.end_reason, record.ended_by) == ("protocol_error", "bridge")
    # The stream broke, not the caller, who may still be on the line: the
    # persona's fallback, not a silent hang-up.
    assert answer.said, answer.verbs
    assert record.error  # what was wrong is on the record
    # A warning, not a bridge failure: no traceback, no "call task failed".
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    model_closed(bridge)
    await still_serving(bridge, leaks)


async def test_unknown_event_is_ignored_and_the_call_goes_on(bridge: LocalBridge) -> None:
    leaks = baseline(bridge)
    async with open_call(bridge) as stream:
        model = await model_ready(bridge)
        await talk(stream, 0.1)
        future_event = {
            "event": "transcription",
            "sequenceNumber": "99",
            "streamSid": stream.stream_sid,
            "transcription": {"text": "hello"},
        }
        await stream.send(json.dumps(future_event))
        fed_before = model.input_messages
        await talk(stream, 0.3)
        await stream.stop()
        async with asyncio.timeout(10):
            await stream.wait_closed()
    record = await record_of(bridge, stream.call_sid)
    assert record.end_reason == "caller_hangup"
    assert model.input_messages > fed_before  # the model was still fed after it
    await still_serving(bridge, leaks)


# --------------------------------------------------------------------------- flood


async def test_media_flood_is_paced_to_real_time_and_the_bridge_stays_responsive(
    bridge: LocalBridge,
) -> None:
    leaks = baseline(bridge)
    flood_seconds = 1.0
    loop = asyncio.get_running_loop()
    async with open_call(bridge) as stream:
        model = await model_ready(bridge)

        async def flood() -> int:
            sent = 0
            ends = loop.time() + flood_seconds
            while loop.time() < ends:
                await stream.media(FRAME, sent * 20)
                sent += 1
                if sent % 20 == 0:
                    await asyncio.sleep(0)  # let the health checks run in this loop too
            return sent

        flooding = asyncio.create_task(flood())
        health: list[int] = []
        async with httpx.AsyncClient(timeout=5.0) as http:
            while not flooding.done():
                health.append((await http.get(bridge.url + "/healthz")).status_code)
                await asyncio.sleep(0.05)
        sent = await flooding
        await talk(stream, 0.2)
        await stream.stop()
        async with asyncio.timeout(10):
            await stream.wait_closed()
    record = await record_of(bridge, stream.call_sid)
    assert record.end_reason == "caller_hangup"
    # The health endpoint answered, repeatedly, while the flood was running.
    assert len(health) >= 3
    assert set(health) == {200}
    closed = await bridge.self_hosted[0].wait_for_close(0)
    assert closed.closed_at is not None
    assert model.handshake_at is not None
    fed_seconds = model.input_samples / 24_000
    open_seconds = closed.closed_at - model.handshake_at
    # Far more audio was sent than real time allows ...
    assert sent * 0.02 > 3 * open_seconds, (sent, open_seconds)
    # ... and the model got no more than real time (plus the pacer's small lead).
    assert fed_seconds <= open_seconds + 0.1, (fed_seconds, open_seconds)
    await still_serving(bridge, leaks)
