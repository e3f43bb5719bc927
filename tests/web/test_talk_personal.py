"""Personal calls on every leg: hours, context and templates live in ``Bridge.admit``.

The Talk page's socket (a plain WebSocket client, no browser) and a call admitted
with per-call variables (what outbound will bring: a contact row, ``--var``) get
the same business hours, context lookup and prompt rendering as a phone call.
The context server is the webhook receiver TEST DOUBLE on loopback; the model is
the PersonaPlex simulator, which records the prompt it was connected with.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from websockets.asyncio.client import connect

from phonebridge.calls.bridge import Bridge, NewCall
from phonebridge.calls.outcome import CallEndReason
from phonebridge.calls.pending import PendingCall
from phonebridge.local import LocalBridge, SimulatorOptions
from phonebridge.simulators.webhook_receiver import WebhookReceiver

from ..e2e.leaks import assert_no_leaks, baseline
from ..e2e.test_personal_calls import CUSTOMER, SECRET, citysan_with_context, closed_all_week
from .conftest import TOKEN, BridgeFactory, record_of
from .test_talk_abuse import START, closed_with, model_connections, socket_path, ws_url

FAST_MODEL = SimulatorOptions(reply="echo", conditioning_delay=0.05)


async def prompt_of(bridge: LocalBridge) -> str:
    """The prompt the one model connection was opened with (once it has connected)."""
    async with asyncio.timeout(5):
        await bridge.self_hosted[0].wait_for_connections(1)
    [connection] = bridge.self_hosted[0].connections
    return connection.query["text_prompt"][0]


def set_prompt(personas_dir: Path, prompt: str) -> None:
    """citysan.yaml with its (folded, multi-line) prompt replaced by ``prompt``."""
    path = personas_dir / "citysan.yaml"
    kept: list[str] = []
    in_prompt = False
    for line in path.read_text().splitlines():
        if line.startswith("prompt:"):
            in_prompt = True
            continue
        if in_prompt and line.startswith("  "):
            continue
        in_prompt = False
        kept.append(line)
    path.write_text("\n".join([*kept, f"prompt: {json.dumps(prompt)}"]) + "\n")


def bridge_of(bridge: LocalBridge) -> Bridge:
    found: Bridge = bridge.app.state.deps.bridge
    return found


async def test_a_browser_call_gets_the_context_lookup_and_its_rendered_prompt(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with WebhookReceiver(reply=CUSTOMER, secret=SECRET) as receiver:
        citysan_with_context(
            personas_dir,
            receiver.url,
            "Greet {{ customer.name }} ({{ caller_number }}) for {{ persona_name }}.",
        )
        async with start_bridge(
            simulators=FAST_MODEL, dashboard_token=TOKEN, webhook_secret=SECRET
        ) as bridge:
            async with connect(ws_url(bridge, await socket_path(bridge))) as ws:
                await ws.send(START)
                call = json.loads(await ws.recv())
                assert call["type"] == "call"
                prompt = await prompt_of(bridge)
                await ws.send(json.dumps({"type": "hangup"}))
                await closed_with(ws)
            row = await record_of(bridge, call["callSid"])
    assert prompt == "Greet Omar Torres (browser:alice) for CitySan waste services."
    [lookup] = receiver.received
    assert lookup.signature_ok is True
    body = lookup.json()
    assert (body["carrier"], body["from"], body["call_sid"]) == (
        "browser",
        "browser:alice",
        call["callSid"],
    )
    assert row.channel == "browser"
    assert row.end_reason == "caller_hangup"


async def test_a_browser_call_outside_hours_is_refused_as_closed_and_opens_nothing(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    closed_all_week(personas_dir, "  say: Closed today.\n")
    async with start_bridge(simulators=FAST_MODEL, dashboard_token=TOKEN) as bridge:
        before = baseline(bridge)
        async with connect(ws_url(bridge, await socket_path(bridge))) as ws:
            await ws.send(START)
            refused = json.loads(await ws.recv())
            assert await closed_with(ws) == 1013
        await asyncio.sleep(0.1)
        assert model_connections(bridge) == 0
        await assert_no_leaks(bridge, before)
    assert refused["type"] == "refused"
    assert refused["reason"] == "closed"


async def test_per_call_variables_reach_the_prompt_as_contact_values(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    set_prompt(personas_dir, "Remind {{ contact.name }} of the pickup on {{ contact.day }}.")
    async with start_bridge(simulators=FAST_MODEL) as bridge:
        core = bridge_of(bridge)
        persona = core.persona_book().by_id("citysan")
        assert persona is not None
        call_sid = "CA" + "7" * 32
        pending = await core.admit(
            NewCall(
                call_sid=call_sid,
                from_number="+14165550101",
                to_number="+14165550177",
                persona=persona,
                request=persona.session_request(),
                channel="twilio",
                direction="outbound",
                variables={"name": "Ada", "day": "Tuesday"},
            )
        )
        assert isinstance(pending, PendingCall)
        async with asyncio.timeout(5):
            await pending.opening
        prompt = await prompt_of(bridge)
        await core.abandon(pending, CallEndReason.NO_STREAM, "test: no leg")
        row = await record_of(bridge, call_sid)
    assert prompt == "Remind Ada of the pickup on Tuesday."
    assert pending.request.prompt == prompt
    assert row.end_reason == "no_stream"
