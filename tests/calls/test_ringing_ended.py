"""Who tells the other replicas that a call ended while it rang, and who does not.

A bridge with no pending calls (so nothing is withdrawn locally) shares an
in-memory ``RingingHangups`` with a recorder standing in for the other
replicas' subscribers. The freeing itself, across two replicas on a real
Redis, is tests/coordination/test_cluster_ringing_hangup.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from phonebridge.calls.admission import Admission
from phonebridge.calls.bridge import Bridge, BridgeConfig
from phonebridge.calls.journal import JournalFactory
from phonebridge.coordination.memory import MemoryRingingHangups, ServerPool
from phonebridge.personas.book import PersonaBook
from phonebridge.telephony.telnyx.callcontrol import CallWebhook
from phonebridge.telephony.twilio.entry import TwilioEntry
from phonebridge.web.carriers import telnyx as telnyx_route
from phonebridge.web.carriers.common import CarrierEdge

SID = "CA" + "1" * 32


def quiet_bridge(tmp_path: Path, hangups: MemoryRingingHangups) -> Bridge:
    def no_personas() -> PersonaBook:
        raise AssertionError("no call here needs a persona")

    return Bridge(
        config=BridgeConfig(),
        personas=no_personas,
        admission=Admission(ServerPool((), clock=lambda: 0.0), available_providers=(), max_calls=1),
        factories={},
        journals=JournalFactory(data_dir=tmp_path, index=None),
        clock=lambda: 0.0,
        hangups=hangups,
    )


async def told(hangups: MemoryRingingHangups, act: Any) -> list[str]:
    """The SIDs the other replicas were told while ``act()`` ran."""
    heard: list[str] = []

    async def record(call_sid: str) -> None:
        heard.append(call_sid)

    listener = asyncio.create_task(hangups.run_forever(record))
    await asyncio.sleep(0)  # subscribed
    await act()
    await asyncio.sleep(0)  # delivered
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    return heard


async def test_twilio_status_of_a_call_not_held_here_is_told_once_ended(tmp_path: Path) -> None:
    hangups = MemoryRingingHangups()
    bridge = quiet_bridge(tmp_path, hangups)
    entry = TwilioEntry(bridge, stream_url="wss://x/twilio/media", action_url="https://x/a")

    async def statuses() -> None:
        await entry.call_status({"CallSid": SID, "CallStatus": "ringing"})  # not an end
        await entry.call_status({"CallSid": SID, "CallStatus": "in-progress"})
        await entry.call_status({"CallSid": SID, "CallStatus": "no-answer"})

    assert await told(hangups, statuses) == [SID]
    assert bridge.metrics.ringing_hangups.labels("local")._value.get() == 0


async def test_a_call_this_replica_runs_or_answered_is_not_told(tmp_path: Path) -> None:
    hangups = MemoryRingingHangups()
    bridge = quiet_bridge(tmp_path, hangups)
    entry = TwilioEntry(bridge, stream_url="wss://x/twilio/media", action_url="https://x/a")
    live, answered = "CA" + "2" * 32, "CA" + "3" * 32
    bridge.live[live] = cast(Any, object())  # its own socket ends it here
    bridge._held.add(answered)  # claimed or freed here: no other replica holds it

    async def statuses() -> None:
        for sid in (live, answered, ""):
            await entry.call_status({"CallSid": sid, "CallStatus": "completed"})

    assert await told(hangups, statuses) == []


def telnyx_hook(event_type: str) -> CallWebhook:
    return CallWebhook(
        event_id="e1",
        event_type=event_type,
        call_control_id="v3:abc",
        call_session_id="s1",
        from_number="+14165550123",
        to_number="+14165550150",
        direction="incoming",
        client_state="",
        hangup_cause="normal_clearing",
    )


async def test_telnyx_hangup_of_a_call_not_held_here_is_told(tmp_path: Path) -> None:
    hangups = MemoryRingingHangups()
    bridge = quiet_bridge(tmp_path, hangups)
    edge = cast(CarrierEdge, SimpleNamespace(bridge=bridge))
    api = cast(Any, None)  # no command may be sent for a call not held here

    async def hooks() -> None:
        # The stream stopped elsewhere: the caller is still there, nothing to tell.
        await telnyx_route.stream_gone(edge, api, telnyx_hook("streaming.stopped"), "telnyx:a")
        await telnyx_route.stream_gone(edge, api, telnyx_hook("call.hangup"), "telnyx:b")

    assert await told(hangups, hooks) == ["telnyx:b"]
