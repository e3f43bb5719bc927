"""Hand the caller to a human (issue 17), end to end on loopback.

The caller is the Twilio phone simulator; the model is the PersonaPlex
simulator (scripted to *say* "let me transfer you" for the phrase trigger);
Twilio's REST API and the human's leg are a fake on loopback that the real
``twilio`` package talks to (tests/e2e/fake_twilio_api.py, a test double).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN, PUBLIC_URL, LocalBridge, SimulatorOptions
from phonebridge.simulators.phone.dial import dial
from phonebridge.simulators.phone.report import DialReport
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from .conftest import BridgeFactory, record_of, tone_mulaw
from .fake_twilio_api import ACCOUNT, Behaviour, FakeTwilio

DESK = "+14165550150"  # the persona with a warm transfer
COLD_DESK = "+14165550151"  # the persona with a cold transfer
HUMAN = "+14165550199"
CALLER = "+15005550006"

PERSONA = """\
name: {name}
numbers: ["{number}"]
provider: personaplex
voice: NATF2
prompt: You answer the help desk line.
fallback:
  say: "Sorry, nobody is free right now. Goodbye."
transfer:
  to: "{human}"
  mode: {mode}
  keys: {{"0": transfer, "9": opt_out}}
  agent_phrases:
    patterns: ["transfer you"]
    confirm_seconds: 0.3
  warm:
    ring_seconds: 5
    accept_seconds: 5
    on_no_answer: {on_no_answer}
"""


def write_personas(directory: Path, on_no_answer: str = "persona") -> None:
    for stem, name, number, mode in (
        ("desk", "Help desk", DESK, "warm"),
        ("colddesk", "Cold desk", COLD_DESK, "cold"),
    ):
        text = PERSONA.format(
            name=name, number=number, human=HUMAN, mode=mode, on_no_answer=on_no_answer
        )
        (directory / f"{stem}.yaml").write_text(textwrap.dedent(text))


@asynccontextmanager
async def transfer_bridge(
    start_bridge: BridgeFactory,
    personas_dir: Path,
    behaviour: Behaviour,
    *,
    say: list[tuple[float, str]] | None = None,
    on_no_answer: str = "persona",
) -> AsyncIterator[tuple[LocalBridge, FakeTwilio]]:
    write_personas(personas_dir, on_no_answer)
    fake = FakeTwilio(auth_token=DEMO_AUTH_TOKEN, public_url=PUBLIC_URL, behaviour=behaviour)
    options = SimulatorOptions(reply="echo", conditioning_delay=0.05, extra={"say": say or []})
    async with (
        fake.running(),
        start_bridge(
            simulators=options, twilio_account_sid=ACCOUNT, twilio_api_url=fake.url
        ) as bridge,
    ):
        fake.bridge_url = bridge.url
        yield bridge, fake


async def call(bridge: LocalBridge, to: str, **options: Any) -> DialReport:
    options.setdefault("audio", tone_mulaw(2.0))
    options.setdefault("tail", 0.5)
    async with asyncio.timeout(30):
        return await dial(
            bridge.url,
            to=to,
            from_=CALLER,
            auth_token=DEMO_AUTH_TOKEN,
            public_url=bridge.public_url,
            **options,
        )


async def until(condition: Callable[[], object], within: float = 5.0) -> None:
    """Wait (bounded) for something another task does: a webhook's answer, a REST call."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


def events(path: str | None) -> list[tuple[str, str]]:
    assert path is not None
    data = json.loads(Path(path).read_text())
    return [(event["kind"], event.get("detail", "")) for event in data["events"]]


def kinds(path: str | None) -> list[str]:
    return [kind for kind, _ in events(path)]


def metric(bridge: LocalBridge, name: str, **labels: str) -> float:
    value = bridge.app.state.deps.bridge.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


LONG_CALL = {"audio": tone_mulaw(2.0), "tail": 8.0}
SAY_TRANSFER = [
    (1.0, "Of course. Let me transfer you to a colleague."),
    (1.5, "I will transfer you now."),
]


async def test_dtmf_0_gives_a_cold_transfer_once(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with transfer_bridge(start_bridge, personas_dir, "accept") as (bridge, fake):
        report = await call(bridge, COLD_DESK, dtmf=[(0.6, "00")], **LONG_CALL)
        # The bridge ended the stream; Twilio asked the <Connect action> URL and got <Dial>.
        assert report.ended_by == "bridge"
        assert report.action_status == 200
        document = ET.fromstring(report.twiml_answers[-1])
        assert [child.tag for child in document] == ["Dial"]  # nothing after it
        assert report.dialled[-1] == HUMAN
        record = await record_of(bridge, report.call_sid)
        assert record.end_reason == "transferred"
        assert (record.transfer_to, record.transfer_mode, record.transfer_result) == (
            HUMAN,
            "cold",
            "dialled",
        )
        assert record.transfer_at is not None
        # The model socket was closed by the time the caller's stream was.
        model = bridge.self_hosted[0].connections[0]
        assert model.closed_at is not None
        assert fake.calls == []  # a cold transfer rings nobody by REST
        happened = kinds(record.transcript_path)
        assert happened.count("transfer_trigger") == 1
        assert metric(bridge, "phonebridge_transfers_total", mode="cold", result="dialled") == 1
        assert (
            metric(bridge, "phonebridge_transfer_triggers_total", trigger="dtmf", action="transfer")
            == 1
        )


async def test_agent_phrase_gives_a_warm_transfer_the_human_accepts(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with transfer_bridge(start_bridge, personas_dir, "accept", say=SAY_TRANSFER) as (
        bridge,
        fake,
    ):
        report = await call(bridge, DESK, dtmf=[(0.4, "42")], **LONG_CALL)
        # One human call, however often the agent said the phrase.
        (human,) = fake.calls
        assert (human.to, human.from_) == (HUMAN, DESK)
        assert human.url.startswith(PUBLIC_URL + "/twilio/transfer/")
        assert human.timeout == "5"
        # The whisper names the caller, the persona, the agent's words and the keys.
        assert "5 0 0 5 5 5 0 0 0 6" in human.whisper
        assert "Help desk" in human.whisper
        assert "transfer you" in human.whisper
        assert "4 2" in human.whisper
        # Accepted: the human joins the conference, and so does the caller.
        # The caller may be bridged before the key's answer reaches the human.
        await until(lambda: human.key_answered_at is not None)
        room = ET.fromstring(human.key_answer).find("Dial/Conference")
        assert room is not None
        assert room.text == f"pb-{report.call_sid}"
        assert report.ended_by == "bridge"
        caller_doc = ET.fromstring(report.twiml_answers[-1])
        assert [child.tag for child in caller_doc] == ["Dial"]
        assert report.dialled[-1] == room.text
        # The model socket closed at the hand-off: open while the human listened,
        # closed by the time the accept was answered (or just after).
        model = bridge.self_hosted[0].connections[0]
        async with asyncio.timeout(5):
            await bridge.self_hosted[0].wait_for_close(0)
        assert model.closed_at is not None
        assert human.pressed_at is not None
        assert human.key_answered_at is not None
        assert model.closed_at >= human.pressed_at
        assert model.closed_at - human.key_answered_at < 1.0
        record = await record_of(bridge, report.call_sid)
        assert record.end_reason == "transferred"
        assert (record.transfer_to, record.transfer_mode, record.transfer_result) == (
            HUMAN,
            "warm",
            "accepted",
        )
        happened = kinds(record.transcript_path)
        assert happened.count("transfer_trigger") == 1
        assert "transfer_answered" in happened
        assert "transfer_accepted" in happened
        assert metric(bridge, "phonebridge_transfers_total", mode="warm", result="accepted") == 1
        # The API and the call page show the hand-off.
        async with httpx.AsyncClient(base_url=bridge.url) as http:
            api = (await http.get(f"/api/calls/{report.call_sid}")).json()
            page = (await http.get(f"/calls/{report.call_sid}")).text
        assert (api["transfer_to"], api["transfer_mode"], api["transfer_result"]) == (
            HUMAN,
            "warm",
            "accepted",
        )
        assert api["transfer_at"] is not None
        assert f"warm to {HUMAN}: <strong>accepted</strong>" in page
        assert fake.errors == []


async def test_declined_warm_transfer_returns_to_the_persona(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with transfer_bridge(start_bridge, personas_dir, "decline", say=SAY_TRANSFER) as (
        bridge,
        fake,
    ):
        report = await call(bridge, DESK, audio=tone_mulaw(5.0), hangup_after=5.0)
        (human,) = fake.calls
        assert "The caller will stay with the assistant" in human.key_answer
        assert report.ended_by == "caller"  # the persona kept the call until the caller left
        # Hold started and ended with a clear (the agent's queued words, then the hold loop's).
        assert report.clears_received >= 2
        record = await record_of(bridge, report.call_sid)
        assert record.end_reason == "caller_hangup"
        assert (record.transfer_mode, record.transfer_result) == ("warm", "declined")
        happened = kinds(record.transcript_path)
        assert happened.index("transfer_declined") < happened.index("transfer_returned")
        # The same model session carried the call before and after the hold.
        assert len(bridge.self_hosted[0].connections) == 1
        assert fake.errors == []


async def test_unanswered_warm_transfer_plays_the_fallback_when_told_to(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with transfer_bridge(
        start_bridge, personas_dir, "no_answer", say=SAY_TRANSFER, on_no_answer="fallback"
    ) as (bridge, fake):
        report = await call(bridge, DESK, **LONG_CALL)
        assert len(fake.calls) == 1
        assert fake.calls[0].whisper == ""  # nobody answered, nobody heard anything
        assert report.ended_by == "bridge"
        assert report.said[-1] == "Sorry, nobody is free right now. Goodbye."
        record = await record_of(bridge, report.call_sid)
        assert record.end_reason == "transfer_failed"
        assert record.transfer_result == "unanswered"
        assert "transfer_unanswered" in kinds(record.transcript_path)


async def test_silent_human_counts_as_unanswered_and_the_persona_takes_the_call_back(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with transfer_bridge(start_bridge, personas_dir, "silent", say=SAY_TRANSFER) as (
        bridge,
        fake,
    ):
        report = await call(bridge, DESK, audio=tone_mulaw(4.0), hangup_after=4.0)
        (human,) = fake.calls
        assert human.whisper  # heard the summary...
        assert "Goodbye" in human.key_answer  # ...pressed nothing, and was let go
        record = await record_of(bridge, report.call_sid)
        assert record.end_reason == "caller_hangup"
        assert record.transfer_result == "unanswered"
        assert "transfer_returned" in kinds(record.transcript_path)


async def test_caller_hanging_up_while_the_human_rings_cancels_the_human_call(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with transfer_bridge(start_bridge, personas_dir, "ring", say=SAY_TRANSFER) as (
        bridge,
        fake,
    ):
        report = await call(bridge, DESK, audio=tone_mulaw(3.0), hangup_after=3.0)
        record = await record_of(bridge, report.call_sid)
        assert record.end_reason == "caller_hangup"
        assert record.transfer_result == "abandoned"
        (human,) = fake.calls
        await until(lambda: human.hang_ups)
        assert human.hang_ups == [("canceled", 200)]


async def test_hanging_up_a_human_call_that_is_already_gone_is_success(
    start_bridge: BridgeFactory, personas_dir: Path, caplog: Any
) -> None:
    # The human's phone gave up (no-answer) and the caller hangs up at the same
    # time: the bridge's cancel finds the call gone (20404), which is success.
    async with transfer_bridge(start_bridge, personas_dir, "ring", say=SAY_TRANSFER) as (
        bridge,
        fake,
    ):
        task = asyncio.create_task(call(bridge, DESK, audio=tone_mulaw(3.0), hangup_after=3.0))
        await until(lambda: fake.calls, within=10)
        fake.calls[0].status = "no-answer"  # gone, but its status callback not yet sent
        report = await task
        record = await record_of(bridge, report.call_sid)
        assert record.transfer_result == "abandoned"
        await until(lambda: fake.calls[0].hang_ups)
        assert fake.calls[0].hang_ups == [("canceled", 404)]
        await asyncio.sleep(0.1)
        problems = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
        assert not [r for r in problems if "hang up" in r.getMessage()], problems


async def test_transfer_webhooks_are_signed_like_every_twilio_webhook(
    start_bridge: BridgeFactory, personas_dir: Path
) -> None:
    async with transfer_bridge(start_bridge, personas_dir, "accept") as (bridge, _):
        form = {"CallSid": "CA" + "3" * 32, "CallStatus": "in-progress", "Digits": "1"}
        async with httpx.AsyncClient(base_url=bridge.url) as http:
            for path in (
                "/twilio/transfer/abc/whisper",
                "/twilio/transfer/abc/key",
                "/twilio/transfer/abc/status",
                "/twilio/r/w9/transfer/abc/whisper",
            ):
                unsigned = await http.post(path, data=form)
                forged = await http.post(
                    path,
                    data=form,
                    headers={SIGNATURE_HEADER: sign("not-the-token", PUBLIC_URL + path, form)},
                )
                assert (unsigned.status_code, forged.status_code) == (403, 403), path
            # Signed, for a transfer nobody here holds (its replica is gone): the
            # human is told and let go, never left on a silent line.
            path = "/twilio/r/w9/transfer/abc/whisper"
            signed = await http.post(
                path,
                data=form,
                headers={SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, PUBLIC_URL + path, form)},
            )
        assert signed.status_code == 200
        verbs = [child.tag for child in ET.fromstring(signed.text)]
        assert verbs == ["Say", "Hangup"]
