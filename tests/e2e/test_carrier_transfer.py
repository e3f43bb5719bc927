"""Cold transfer to a human on the further carriers (issue 17), end to end on loopback.

Each carrier's phone simulator (a TEST DOUBLE) calls the real bridge, whose
REST call control goes to the fake carrier API (a TEST DOUBLE too); the model
is the PersonaPlex simulator. The caller presses the persona's transfer key
and the carrier dials the human its own way: SignalWire's ``<Connect
action>`` answers ``<Dial>``, Vonage's ``disconnected`` event a ``connect``,
Telnyx gets a Call Control ``transfer``, Plivo a REST transfer to a ``<Dial>``
document. Exotel cannot (no in-call REST): the key goes to the model.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from phonebridge.local import LocalBridge
from phonebridge.simulators.phone.carriers import FakeCarrierApi
from phonebridge.simulators.phone.report import DialReport

from ..conftest import BridgeFactory
from .leaks import assert_no_leaks
from .test_carriers import SECRETS, call, carrier_settings, read_json, row_of, tone

COLD_DESK = "+14165550151"
WARM_DESK = "+14165550152"
SIP_DESK = "+14165550153"
HUMAN = "+14165550199"
SIP_HUMAN = "sip:desk@pbx.example.com"
TWILIO_ACCOUNT = "AC" + "ab" * 16
NOWHERE = "http://127.0.0.1:9"  # Twilio's REST API for the warm dialer: never asked here
COLD_CARRIERS = ["telnyx", "plivo", "vonage", "signalwire"]

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
"""


@pytest.fixture
async def api() -> AsyncIterator[FakeCarrierApi]:
    async with FakeCarrierApi(SECRETS.api_credentials()) as running:
        yield running


@pytest.fixture
async def bridge(
    start_bridge: BridgeFactory, api: FakeCarrierApi, personas_dir: Path
) -> AsyncIterator[LocalBridge]:
    for stem, number, human, mode in (
        ("colddesk", COLD_DESK, HUMAN, "cold"),
        ("warmdesk", WARM_DESK, HUMAN, "warm"),
        ("sipdesk", SIP_DESK, SIP_HUMAN, "cold"),
    ):
        text = PERSONA.format(name=stem, number=number, human=human, mode=mode)
        (personas_dir / f"{stem}.yaml").write_text(textwrap.dedent(text))
    # Twilio's REST credentials make a warm dialer: a warm persona on a Twilio leg
    # would ring the human through it; on these legs it must not be used.
    async with start_bridge(
        carriers=carrier_settings(api.url, 16_000),
        twilio_account_sid=TWILIO_ACCOUNT,
        twilio_api_url=NOWHERE,
    ) as running:
        yield running


async def press_0_twice(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str, to: str = COLD_DESK
) -> DialReport:
    """Two presses back to back, so the second is on the wire before the hand-off ends
    the stream (a press 100 ms later finds the caller already with the human)."""
    return await call(
        bridge,
        api,
        carrier,
        to=to,
        audio=tone(16_000, 440, 1.5),
        dtmf=[(0.5, "0"), (0.5, "0")],
    )


def carrier_transfers(report: DialReport) -> list[dict[str, Any]]:
    """The transfer commands the fake carrier API received (the REST carriers')."""
    return [r for r in report.rest_requests if r["action"] == "transfer"]


def metric(bridge: LocalBridge, name: str, **labels: str) -> float:
    value = bridge.app.state.deps.bridge.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


@pytest.mark.parametrize("carrier", COLD_CARRIERS)
async def test_dtmf_0_transfers_cold_once_on_each_carrier(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str
) -> None:
    report = await press_0_twice(bridge, api, carrier)
    assert report.protocol_errors == []
    assert report.dtmf_sent == ["0", "0"]
    assert report.ended_by != "caller"  # the bridge handed the caller over
    # The carrier dialled the persona's human, once, and nothing after it.
    assert report.dialled == [HUMAN]
    match carrier:
        case "telnyx":  # Call Control, not TeXML: one transfer command, the last one
            (transfer,) = carrier_transfers(report)
            assert transfer["body"] == {"to": HUMAN}
            assert report.rest_requests[-1] is transfer
        case "plivo":  # the A leg transferred by REST to the <Dial> document, fetched
            (transfer,) = carrier_transfers(report)
            assert report.action_url == transfer["body"]["aleg_url"]
            assert report.action_status == 200
            assert report.twiml_verbs[-1] == "Dial"
        case "vonage":  # the disconnected event answered with a connect
            assert [c["kind"] for c in report.callbacks] == ["disconnected"]
            assert report.twiml_verbs[-1] == "connect"
            assert report.rest_requests == []
        case "signalwire":  # the <Connect action> answered with <Dial>
            assert report.action_status == 200
            assert report.action_answer is not None
            answer = ET.fromstring(report.action_answer)
            assert [verb.tag for verb in answer] == ["Dial"]
            assert carrier_transfers(report) == []
    record = await row_of(bridge, report)
    assert record.channel == carrier
    assert record.end_reason == "transferred"
    assert (record.transfer_to, record.transfer_mode, record.transfer_result) == (
        HUMAN,
        "cold",
        "dialled",
    )
    assert record.transfer_at is not None
    # The model socket closed at the hand-off (one model session, closed).
    (model,) = bridge.self_hosted[0].connections
    assert model.closed_at is not None
    happened = [event["kind"] for event in read_json(record.transcript_path)["events"]]
    # The second press, if the bridge read it before the stream closed, was ignored.
    assert happened.count("transfer_trigger") == 1 + happened.count("transfer_ignored")
    assert "transfer_unavailable" not in happened
    assert metric(bridge, "phonebridge_transfers_total", mode="cold", result="dialled") == 1
    await assert_no_leaks(bridge)


@pytest.mark.parametrize("carrier", COLD_CARRIERS)
async def test_a_warm_persona_on_a_cold_only_leg_transfers_cold(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str
) -> None:
    """Warm needs Twilio's REST dialer and a conference: these legs hand over cold
    (better than keeping a caller who asked for a human), noted ``transfer_cold``."""
    report = await press_0_twice(bridge, api, carrier, to=WARM_DESK)
    assert report.dialled == [HUMAN]
    record = await row_of(bridge, report)
    assert record.end_reason == "transferred"
    assert (record.transfer_mode, record.transfer_result) == ("cold", "dialled")
    events = read_json(record.transcript_path)["events"]
    notes = [(e["kind"], e["detail"]) for e in events if e["kind"] == "transfer_cold"]
    assert notes == [("transfer_cold", "this leg cannot hand over warm: cold transfer")]
    assert "transfer_ringing" not in [e["kind"] for e in events]
    assert metric(bridge, "phonebridge_transfers_total", mode="warm", result="failed") == 0
    await assert_no_leaks(bridge)


@pytest.mark.parametrize("carrier", COLD_CARRIERS)
async def test_a_sip_target_is_dialled_on_each_carrier(
    bridge: LocalBridge, api: FakeCarrierApi, carrier: str
) -> None:
    """Plivo dials a ``<User>``, Vonage a ``sip`` endpoint, SignalWire ``<Sip>``,
    Telnyx transfers ``to`` the URI."""
    report = await press_0_twice(bridge, api, carrier, to=SIP_DESK)
    assert report.protocol_errors == []
    if carrier == "telnyx":
        assert [r["body"] for r in carrier_transfers(report)] == [{"to": SIP_HUMAN}]
    else:
        assert report.dialled == [SIP_HUMAN]
    record = await row_of(bridge, report)
    assert (record.transfer_to, record.transfer_mode) == (SIP_HUMAN, "cold")
    await assert_no_leaks(bridge)


async def test_exotel_cannot_transfer_so_the_key_goes_to_the_model(
    bridge: LocalBridge, api: FakeCarrierApi
) -> None:
    report = await press_0_twice(bridge, api, "exotel")
    assert report.ok, report.protocol_errors
    assert report.ended_by == "caller"  # the call went on until the caller hung up
    assert report.dialled == []
    record = await row_of(bridge, report)
    assert record.end_reason == "caller_hangup"
    assert (record.transfer_to, record.transfer_mode, record.transfer_result) == (
        None,
        None,
        None,
    )
    events = read_json(record.transcript_path)["events"]
    happened = [event["kind"] for event in events]
    assert [e["detail"] for e in events if e["kind"] == "dtmf"] == ["0", "0"]
    assert happened.count("transfer_unavailable") == 2
    assert "transfer_trigger" not in happened
    assert metric(bridge, "phonebridge_transfers_total", mode="cold", result="dialled") == 0
    await assert_no_leaks(bridge)
