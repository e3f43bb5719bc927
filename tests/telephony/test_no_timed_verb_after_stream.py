"""No document the bridge returns can cut a caller off while they talk to a human.

../shared/CARRIERS.md (Telnyx): a TeXML document keeps owning the call while
a human talks to the caller, and a verb left after the stream (a trailing
``<Pause length="N"/>``) ends the document N seconds later, hanging up the
caller mid-conversation. The rule, over every caller document any carrier
module builds (TwiML, cXML, Plivo XML, Vonage NCCO) and every answer of the
bridge's ``<Connect action>`` URL for every end reason and hand-off:

1. nothing follows the stream's verb (``<Connect>``, ``<Stream>``, NCCO
   ``connect`` to a websocket);
2. nothing follows a transfer (``<Dial>``, NCCO ``connect`` to a phone);
3. no timed verb (``Pause``, ``Gather``, ``Record``, ``Wait``) anywhere.

The Telnyx module answers with Call Control (REST commands, JSON:
telephony/telnyx/callcontrol.py), not TeXML, so it leaves no document behind
to misbehave: its after-stream answer is one command, checked below (a
``transfer`` is the last thing the bridge says to the call). A TeXML answer
added later must join the builders below. The carriers' answers to a
hand-off (cold transfers on every carrier that can dial) are checked for every
end reason and hand-off like Twilio's.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phonebridge.calls.admission import Admission
from phonebridge.calls.bridge import Bridge, BridgeConfig
from phonebridge.calls.journal import JournalFactory
from phonebridge.calls.outcome import CallEndReason, CallOutcome, Handoff
from phonebridge.coordination.memory import ServerPool
from phonebridge.personas.book import PersonaBook
from phonebridge.personas.schema import Persona
from phonebridge.telephony.plivo import xml as plivo
from phonebridge.telephony.signalwire import cxml
from phonebridge.telephony.twilio import transfer as twilio_transfer
from phonebridge.telephony.twilio import twiml
from phonebridge.telephony.twilio.entry import TwilioEntry, render_twiml
from phonebridge.telephony.vonage import ncco
from phonebridge.telephony.vonage.ncco import AnswerRequest
from phonebridge.web.carriers import plivo as plivo_route
from phonebridge.web.carriers import telnyx as telnyx_route
from phonebridge.web.carriers import vonage as vonage_route

TIMED = frozenset({"Pause", "Gather", "Record", "Wait"})
STREAM_VERBS = frozenset({"Connect", "Stream", "Start"})
TRANSFER_VERBS = frozenset({"Dial"})

messages = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=60
).filter(lambda text: text.strip() != "")
numbers = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
sips = st.from_regex(r"sip:[a-z]{1,8}@[a-z]{1,8}\.example\.com", fullmatch=True)
targets = st.one_of(numbers, sips)
rooms = st.from_regex(r"pb-CA[0-9a-f]{32}", fullmatch=True)


def check_xml(document: str) -> None:
    root = ET.fromstring(document)
    assert root.tag == "Response"
    verbs = [child.tag for child in root]
    for element in root.iter():
        assert element.tag not in TIMED, f"timed verb <{element.tag}> in {document}"
    for position, verb in enumerate(verbs):
        if verb in STREAM_VERBS | TRANSFER_VERBS:
            assert verbs[position + 1 :] == [], f"{verbs[position + 1 :]} after <{verb}>"


def check_ncco(actions: list[dict[str, Any]]) -> None:
    json.dumps(actions)  # it is JSON
    for position, action in enumerate(actions):
        assert action["action"] not in ("record", "input", "stream") or position < len(actions) - 1
        if action["action"] == "connect":
            assert actions[position + 1 :] == [], f"{actions[position + 1 :]} after connect"


# -- every builder -------------------------------------------------------------------------


@given(message=messages, number=numbers, target=targets, room=rooms)
def test_twilio_documents(message: str, number: str, target: str, room: str) -> None:
    stream = "wss://bridge.example.com/twilio/media"
    action = "https://bridge.example.com/twilio/stream-ended"
    check_xml(twiml.connect_stream(stream, action, {"token": "t"}))
    check_xml(twiml.say_and_hangup(message))
    check_xml(twiml.dial(number, message=message))
    check_xml(twiml.hangup())
    check_xml(twilio_transfer.dial_document(target))
    check_xml(twilio_transfer.join_document(room))
    check_xml(twilio_transfer.handoff_document(Handoff(target)))
    check_xml(twilio_transfer.handoff_document(Handoff(room, join=True)))


def check_call_control(commands: list[tuple[str, dict[str, Any]]]) -> None:
    json.dumps(commands)  # the bodies are JSON
    assert len(commands) == 1, commands  # one command: nothing follows a transfer
    assert commands[0][0] in ("speak", "transfer", "hangup"), commands


@given(message=messages, number=numbers, target=targets)
def test_other_carriers_documents(message: str, number: str, target: str) -> None:
    check_xml(
        cxml.connect_stream(
            "wss://bridge.example.com/signalwire/media",
            action_url="https://bridge.example.com/signalwire/stream-ended",
            sample_rate=16_000,
            bearer_token="secret",
            parameters={"token": "t"},
        )
    )
    check_xml(plivo.stream("wss://bridge.example.com/plivo/media", sample_rate=8_000, headers={}))
    check_xml(plivo.speak_and_hangup(message))
    check_xml(plivo.dial(number, message=message))
    check_xml(plivo.dial(target))
    call = AnswerRequest(
        uuid="u", conversation_uuid="c", from_number="15005550006", to_number="14165550150"
    )
    check_ncco(
        ncco.connect_websocket(
            "wss://bridge.example.com/vonage/media",
            call=call,
            sample_rate=16_000,
            headers={},
            event_url="https://bridge.example.com/vonage/event",
        )
    )
    check_ncco(ncco.talk(message))
    check_ncco(ncco.transfer(number, message=message))
    check_ncco(ncco.transfer(target))


def test_the_checker_catches_the_telnyx_pitfall() -> None:
    texml = (
        '<Response><Start><Stream url="wss://x.example.com/m"/></Start>'
        '<Pause length="60"/></Response>'
    )
    try:
        check_xml(texml)
    except AssertionError:
        pass
    else:
        raise AssertionError("a trailing <Pause> passed the check")
    try:
        check_xml("<Response><Dial>+14165550199</Dial><Say>bye</Say></Response>")
    except AssertionError:
        return
    raise AssertionError("a verb after <Dial> passed the check")


# -- every answer of the <Connect action> URL ------------------------------------------------


def persona(directory: Path, say: str, transfer_to: str | None) -> Persona:
    return Persona.model_validate(
        {
            "id": "line",
            "source": directory / "line.yaml",
            "name": "Line",
            "numbers": ["+14165550150"],
            "provider": "personaplex",
            "voice": "NATF2",
            "prompt": "Hello.",
            "fallback": {"say": say, "transfer_to": transfer_to},
        }
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(
    reason=st.sampled_from(list(CallEndReason)),
    handoff=st.one_of(
        st.none(),
        targets.map(Handoff),
        rooms.map(lambda room: Handoff(room, join=True)),
    ),
    say=messages,
    transfer_to=st.one_of(st.none(), numbers),
)
async def test_every_action_answer(
    tmp_path: Path,
    reason: CallEndReason,
    handoff: Handoff | None,
    say: str,
    transfer_to: str | None,
) -> None:
    book = PersonaBook.from_personas([persona(tmp_path, say, transfer_to)], directory=tmp_path)
    bridge = Bridge(
        config=BridgeConfig(),
        personas=lambda: book,
        admission=Admission(ServerPool((), clock=lambda: 0.0), available_providers=(), max_calls=1),
        factories={},
        journals=JournalFactory(data_dir=tmp_path, index=None),
        clock=lambda: 0.0,
    )
    twilio = TwilioEntry(
        bridge,
        stream_url="wss://bridge.example.com/twilio/media",
        action_url="https://bridge.example.com/twilio/stream-ended",
    )
    sid = "CA" + "1" * 32
    outcome = CallOutcome(sid, "line", reason, "why", handoff)
    # Every carrier's answer to the same outcome (SignalWire's cXML is TwiML's).
    answer = bridge.decide(outcome)
    check_xml(render_twiml(answer))
    check_xml(plivo_route.render(answer))
    check_ncco(vonage_route.render(answer))
    check_call_control(telnyx_route.commands(answer))
    if handoff is not None and not handoff.join:  # a cold transfer dials on every carrier
        assert [verb.tag for verb in ET.fromstring(plivo_route.render(answer))] == ["Dial"]
        assert [action["action"] for action in vonage_route.render(answer)] == ["connect"]
        assert telnyx_route.commands(answer)[0] == ("transfer", {"to": handoff.to})
    bridge.outcomes.record(outcome)
    check_xml(await twilio.stream_ended({"CallSid": sid, "To": "+14165550150"}))
    # A call no replica holds (its replica died) gets the fallback: checked too.
    check_xml(await twilio.stream_ended({"CallSid": "CA" + "2" * 32, "To": "+14165550150"}))
