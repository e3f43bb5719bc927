"""Personal calls end to end: the context webhook, templates and business hours.

A real context server on loopback (the webhook receiver test double), the real
bridge, the PersonaPlex simulator recording the prompt it was connected with.
Every lookup failure must leave the call going on, with the fallback prompt.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from phonebridge.local import LocalBridge
from phonebridge.simulators.webhook_receiver import Mode, WebhookReceiver

from ..conftest import BridgeFactory, record_of
from .test_call_path import CITYSAN, call, read_json

SECRET = "context-secret-for-tests"
FALLBACK = "Ask the caller for their name before anything else."
CUSTOMER = {"customer": {"name": "Omar Torres", "plan": "biweekly"}}


def citysan_with_context(personas_dir: Path, url: str, prompt: str, **more: str) -> None:
    lines = (personas_dir / "citysan.yaml").read_text().splitlines()
    kept = []
    skipping = False
    for line in lines:
        if line.startswith("prompt:"):
            skipping = True
            continue
        if skipping and line.startswith("  "):
            continue
        skipping = False
        kept.append(line)
    kept += [
        f"prompt: {json.dumps(prompt)}",
        "timezone: America/Toronto",
        "context:",
        f"  url: {url}/lookup",
        "  timeout_ms: 300",
        f"  fallback_prompt: {json.dumps(FALLBACK)}",
    ]
    kept += [f"{key}: {value}" for key, value in more.items()]
    (personas_dir / "citysan.yaml").write_text("\n".join(kept) + "\n")


def prompt_of(bridge: LocalBridge) -> str:
    [connection] = bridge.self_hosted[0].connections
    return connection.query["text_prompt"][0]


def transcript_events(bridge_record_path: str | None) -> dict[str, str]:
    """Events by kind. The personal ones happen before the stream: they sit at 0 on the
    call's timeline and carry when they happened as data, never in their text."""
    data = read_json(bridge_record_path)
    for event in data["events"]:
        if event["kind"] in ("context", "prompt", "prompt_error"):
            assert event["at"] == 0.0
            assert isinstance(event["pre_stream"], float)
            assert event["pre_stream"] >= 0.0
    return {event["kind"]: event["detail"] for event in data["events"]}


async def test_the_context_reply_reaches_the_models_prompt(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with WebhookReceiver(reply=CUSTOMER, secret=SECRET) as receiver:
        citysan_with_context(
            personas_dir,
            receiver.url,
            "Verify the customer's name, {{ customer.name }}, calling from {{ caller_number }}.",
        )
        async with start_bridge(webhook_secret=SECRET) as bridge:
            report = await call(bridge, CITYSAN, from_="+14165550177")
            assert report.ok
            given = prompt_of(bridge)
            assert given == "Verify the customer's name, Omar Torres, calling from +14165550177."
            record = await record_of(bridge, report.call_sid)
    [request] = receiver.received
    assert request.signature_ok is True  # the receiver checked our signature with its secret
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "call_sid": report.call_sid,
        "from": "+14165550177",
        "to": CITYSAN,
        "persona": "citysan",
        "direction": "inbound",
        "carrier": "twilio",
    }
    events = transcript_events(record.transcript_path)
    assert events["context"] == "ok"
    assert events["prompt"] == given  # what the model was told, exactly


@pytest.mark.parametrize(
    ("mode", "receiver_secret", "outcome"),
    [
        ("slow", SECRET, "timeout"),
        ("status_500", SECRET, "http_status"),
        ("malformed", SECRET, "malformed"),
        ("huge", SECRET, "oversize"),
        ("redirect", SECRET, "redirect"),
        ("ok", "the receiver's other secret", "http_status"),  # it refuses our signature: 401
    ],
)
async def test_a_failed_lookup_gives_the_fallback_prompt_and_the_call_goes_on(
    start_bridge: BridgeFactory,
    personas_dir: Path,
    mode: Mode,
    receiver_secret: str,
    outcome: str,
) -> None:
    async with WebhookReceiver(mode=mode, reply=CUSTOMER, secret=receiver_secret) as receiver:
        citysan_with_context(personas_dir, receiver.url, "Verify {{ customer.name }}.")
        async with start_bridge(webhook_secret=SECRET) as bridge:
            report = await call(bridge, CITYSAN)
            assert report.ok
            assert report.frames_received > 0
            assert prompt_of(bridge) == FALLBACK
            record = await record_of(bridge, report.call_sid)
            metrics = await _metrics(bridge)
    assert record.end_reason == "caller_hangup"
    assert transcript_events(record.transcript_path)["context"].startswith(outcome)
    assert f'phonebridge_context_lookups_total{{outcome="{outcome}"}} 1.0' in metrics


async def test_a_template_error_gives_the_fallback_prompt(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with WebhookReceiver(reply=CUSTOMER, secret=SECRET) as receiver:
        # The reply has no customer.phone: strict undefined makes it an error.
        citysan_with_context(personas_dir, receiver.url, "Call {{ customer.phone }} back.")
        async with start_bridge(webhook_secret=SECRET) as bridge:
            report = await call(bridge, CITYSAN)
            assert report.ok
            assert prompt_of(bridge) == FALLBACK
            metrics = await _metrics(bridge)
            record = await record_of(bridge, report.call_sid)
    assert 'phonebridge_template_render_errors_total{text="prompt"} 1.0' in metrics
    assert "has no attribute 'phone'" in transcript_events(record.transcript_path)["prompt_error"]


async def test_record_prompt_false_keeps_the_prompt_out_of_the_record(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with WebhookReceiver(reply=CUSTOMER, secret=SECRET) as receiver:
        citysan_with_context(
            personas_dir, receiver.url, "Verify {{ customer.name }}.", record_prompt="false"
        )
        async with start_bridge(webhook_secret=SECRET) as bridge:
            report = await call(bridge, CITYSAN)
            assert prompt_of(bridge) == "Verify Omar Torres."
            record = await record_of(bridge, report.call_sid)
    assert "prompt" not in transcript_events(record.transcript_path)
    assert "Omar" not in json.dumps(read_json(record.transcript_path))


def closed_all_week(personas_dir: Path, closed: str) -> None:
    today = datetime.now(UTC).date()
    days = [str(today + timedelta(days=offset)) for offset in (-1, 0, 1)]
    path = personas_dir / "citysan.yaml"
    path.write_text(
        path.read_text()
        + "timezone: UTC\nhours:\n  weekly:\n    mon: ['00:00-24:00']\n"
        + f"  holidays: [{', '.join(days)}]\nclosed:\n{closed}"
    )


async def test_outside_hours_the_closed_message_plays_and_no_model_opens(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    closed_all_week(personas_dir, "  say: CitySan is closed today, {{ caller_number }}.\n")
    async with start_bridge() as bridge:
        report = await call(bridge, CITYSAN, from_="+14165550177")
        assert report.said == ["CitySan is closed today, +14165550177."]
        assert report.twiml_verbs[-1] == "Hangup"
        record = await record_of(bridge, report.call_sid)
        await asyncio.sleep(0.1)
        assert bridge.self_hosted[0].connections == []
        assert bridge.polargrid.connections == []
    assert record.end_reason == "closed"
    assert record.model_socket_seconds == 0.0


async def test_outside_hours_a_call_can_go_to_another_persona(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    closed_all_week(personas_dir, "  route_to: casual\n")
    async with start_bridge() as bridge:
        report = await call(bridge, CITYSAN)
        assert report.ok
        assert report.frames_received > 0
        record = await record_of(bridge, report.call_sid)
        assert "eating at home" in prompt_of(bridge)  # casual's prompt
    assert record.persona == "casual"


async def _metrics(bridge: LocalBridge) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(bridge.url + "/metrics")
    return response.text
