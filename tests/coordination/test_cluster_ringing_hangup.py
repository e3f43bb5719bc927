"""A caller hangs up while it rings; the status callback reaches the *other* replica.

Two whole in-process replicas (``local_bridge``) share one real redis-server
and one PersonaPlex simulator (a TEST DOUBLE, slow to hand-shake so the
webhook stays held). Replica A takes the voice webhook and holds it; Twilio's
status callback ``completed`` goes to replica B, which does not hold the
call: B tells every replica, and A frees the model socket long before the
pending deadline (60 s here). Assertions are on state within a generous
liveness bound, never on durations.
"""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack
from pathlib import Path

import httpx

from phonebridge.calls.bridge import Bridge
from phonebridge.coordination.redis_hangups import RedisRingingHangups
from phonebridge.local import LocalBridge, SimulatorOptions, local_bridge
from phonebridge.simulators.personaplex.server import PersonaPlexSimulator

from ..conftest import record_of
from ..e2e.test_ready_answer import post, voice_form
from ..realservers.redis_server import RedisServer
from .test_cluster_bridges import TTL, wait_for_pool

SLOW = 30.0  # the model's conditioning: the webhook is still held when the caller hangs up


def bridge_of(replica: LocalBridge) -> Bridge:
    bridge = replica.app.state.deps.bridge
    assert isinstance(bridge, Bridge)
    return bridge


async def test_a_status_callback_on_another_replica_frees_the_held_call(
    tmp_path: Path, personas_dir: Path, redis_server: RedisServer
) -> None:
    async with AsyncExitStack() as stack:
        model = await stack.enter_async_context(
            PersonaPlexSimulator(flavour="self-hosted", reply="echo", conditioning_delay=SLOW)
        )
        a, b = [
            await stack.enter_async_context(
                local_bridge(
                    personas_dir=personas_dir,
                    data_dir=tmp_path / f"data-{name}",
                    simulators=SimulatorOptions(reply="echo"),
                    personaplex_urls=(model.url,),  # the shared pool
                    redis_url=redis_server.url,
                    replica_id=name,
                    lease_ttl_seconds=TTL,
                    redis_timeout_seconds=0.2,
                    pending_timeout=60,
                    answer_within_seconds=9,  # held (at most 9 s) while the model is slow
                )
            )
            for name in ("a", "b")
        ]
        await wait_for_pool([a, b], 1)
        for replica in (a, b):
            hangups = bridge_of(replica).hangups
            assert isinstance(hangups, RedisRingingHangups)
            async with asyncio.timeout(10):
                await hangups.until_listening()

        call_sid = "CA" + secrets.token_hex(16)
        async with httpx.AsyncClient(timeout=20) as http:
            webhook = asyncio.create_task(post(http, a, "/twilio/voice", voice_form(call_sid)))
            async with asyncio.timeout(10):
                await model.wait_for_connections(1)
            assert bridge_of(a).pending.by_call_sid(call_sid) is not None
            # The number's status callback (the plain path, as `twilio configure`
            # sets it in a cluster) reaches replica B, which holds nothing.
            status = await post(
                http, b, "/twilio/call-status", {"CallSid": call_sid, "CallStatus": "completed"}
            )
            assert status.status_code == 204
            async with asyncio.timeout(10):  # liveness only; the pending deadline is 60 s
                closed = await model.wait_for_close(0)
                answer = await webhook  # the held webhook ends with the call
        assert closed.handshake_at is None  # freed while it still rang
        assert "<Hangup" in answer.text
        assert "<Connect" not in answer.text
        assert bridge_of(a).pending.by_call_sid(call_sid) is None
        record = await record_of(a, call_sid)
        assert record.end_reason == "caller_hangup"
        assert "hung up before the stream" in (record.error or "")
        assert "another replica" in (record.error or "")
        assert bridge_of(a).metrics.ringing_hangups.labels("signalled")._value.get() == 1
        assert bridge_of(b).metrics.ringing_hangups.labels("local")._value.get() == 0
