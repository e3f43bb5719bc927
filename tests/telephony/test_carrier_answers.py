"""Answer documents per carrier, against goldens (CARRIERS.md §1.1, §2.1, §3.1, §4.1, §5.1).

The goldens in tests/fixtures/carriers/ were read against the carriers' docs
by hand; a change to a builder that changes the wire shows here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from phonebridge.errors import LocalProtocolError, RemoteProtocolError
from phonebridge.telephony.exotel import applet
from phonebridge.telephony.plivo import xml as plivo_xml
from phonebridge.telephony.signalwire import cxml
from phonebridge.telephony.telnyx import callcontrol
from phonebridge.telephony.vonage import ncco

GOLDEN = Path(__file__).parents[1] / "fixtures" / "carriers"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text().strip()


def test_telnyx_streaming_start_golden() -> None:
    body = callcontrol.streaming_start_command(
        "wss://bridge.example.com/telnyx/media/r1",
        auth_token="tok-123",
        sample_rate=16_000,
        parameters={"call": "abc"},
        client_state="pending:abc",
    )
    assert json.dumps(body, indent=1) == golden("telnyx_streaming_start.json")
    assert body["stream_bidirectional_mode"] == "rtp"  # mp3 would drop live audio
    assert base64.b64decode(body["client_state"]) == b"pending:abc"
    assert callcontrol.answer_command("x") == {"client_state": "eA=="}


@pytest.mark.parametrize(
    ("url", "rate", "token"),
    [
        ("ws://bridge.example.com/telnyx/media", 16_000, "t"),
        ("wss://bridge.example.com/telnyx/media", 11_025, "t"),
        ("wss://bridge.example.com/telnyx/media", 16_000, ""),
        ("wss://bridge.example.com/telnyx/media", 16_000, "t" * 4001),
    ],
)
def test_telnyx_streaming_start_refuses_misuse(url: str, rate: int, token: str) -> None:
    with pytest.raises(LocalProtocolError):
        callcontrol.streaming_start_command(
            url, auth_token=token, sample_rate=rate, parameters={}, client_state=""
        )


def test_telnyx_webhook_parsing() -> None:
    body = json.dumps(
        {
            "data": {
                "record_type": "event",
                "event_type": "call.initiated",
                "id": "e1",
                "occurred_at": "2026-01-01T00:00:00Z",
                "payload": {
                    "call_control_id": "v3:cc",
                    "call_session_id": "s1",
                    "from": "+14165550100",
                    "to": "+14165550123",
                    "direction": "incoming",
                    "client_state": None,
                },
            },
            "meta": {"attempt": 1},
        }
    ).encode()
    hook = callcontrol.parse_webhook(body)
    assert (hook.event_type, hook.call_control_id, hook.to_number) == (
        "call.initiated",
        "v3:cc",
        "+14165550123",
    )
    assert hook.client_state == ""
    for bad in (b"", b"[]", b'{"data":{}}', b'{"data":{"event_type":"x","payload":{}}}'):
        with pytest.raises(RemoteProtocolError):
            callcontrol.parse_webhook(bad)


def test_plivo_stream_golden() -> None:
    document = plivo_xml.stream(
        "wss://bridge.example.com/plivo/media/r1",
        sample_rate=16_000,
        headers={"call": "abc123"},
        status_callback="https://bridge.example.com/plivo/status",
    )
    assert document == golden("plivo_stream.xml")


@pytest.mark.parametrize(
    ("url", "rate", "headers"),
    [
        ("wss://b.example/plivo/media?x=1", 16_000, {}),
        ("ws://b.example/plivo/media", 16_000, {}),
        ("wss://b.example/plivo/media", 24_000, {}),
        ("wss://b.example/plivo/media", 16_000, {"a": "b-c"}),
        ("wss://b.example/plivo/media", 16_000, {"a": "b" * 600}),
    ],
)
def test_plivo_stream_refuses_misuse(url: str, rate: int, headers: dict[str, str]) -> None:
    with pytest.raises(LocalProtocolError):
        plivo_xml.stream(url, sample_rate=rate, headers=headers)


def test_plivo_fallback_documents() -> None:
    assert plivo_xml.speak_and_hangup("Busy & sorry") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Speak>Busy &amp; sorry</Speak>'
        "<Hangup /></Response>"
    )
    assert "<Dial><Number>14165550199</Number></Dial>" in plivo_xml.dial("+14165550199")


def test_vonage_ncco_golden() -> None:
    call = ncco.parse_answer(
        {"uuid": "u-1", "conversation_uuid": "CON-1", "from": "447700900000", "to": "442079460000"}
    )
    assert call.to_number == "+442079460000"
    document = ncco.connect_websocket(
        "wss://bridge.example.com/vonage/media/r1",
        call=call,
        sample_rate=16_000,
        headers={"call": "abc"},
        event_url="https://bridge.example.com/vonage/events",
    )
    assert json.dumps(document, indent=1) == golden("vonage_ncco.json")
    with pytest.raises(RemoteProtocolError):
        ncco.parse_answer({"to": "1"})
    with pytest.raises(LocalProtocolError):
        ncco.connect_websocket(
            "wss://b.example/x", call=call, sample_rate=24_000, headers={}, event_url="https://e"
        )
    with pytest.raises(LocalProtocolError):
        ncco.connect_websocket(
            "wss://b.example/x",
            call=call,
            sample_rate=8_000,
            headers={"h": "v" * 600},
            event_url="https://e",
        )


def test_vonage_fallback_nccos_and_events() -> None:
    assert ncco.transfer("+14165550199", "One moment") == [
        {"action": "talk", "text": "One moment", "language": "en-US"},
        {"action": "connect", "endpoint": [{"type": "phone", "number": "14165550199"}]},
    ]
    event = ncco.parse_event(b'{"status":"disconnected","uuid":"u-1","headers":{"call":"abc"}}')
    assert (event.status, event.headers["call"]) == ("disconnected", "abc")
    with pytest.raises(RemoteProtocolError):
        ncco.parse_event(b"[")


def test_signalwire_cxml_golden() -> None:
    document = cxml.connect_stream(
        "wss://bridge.example.com/signalwire/media/r1",
        action_url="https://bridge.example.com/signalwire/after",
        sample_rate=16_000,
        bearer_token="tok-123",
        parameters={"call": "abc"},
    )
    assert document == golden("signalwire_cxml.xml")
    assert "<Pause" not in document
    for url in ("wss://b.example/m?x=1", "ws://b.example/m"):
        with pytest.raises(LocalProtocolError):
            cxml.connect_stream(
                url, action_url="https://a", sample_rate=16_000, bearer_token="t", parameters={}
            )


def test_exotel_applet_url() -> None:
    url = applet.stream_url(
        "wss://bridge.example.com/exotel/media/r1",
        sample_rate=16_000,
        parameters={"call": "abc"},
        basic_user="key1",
        basic_password="tok/en",
    )
    assert url == (
        "wss://key1:tok%2Fen@bridge.example.com/exotel/media/r1?sample-rate=16000&call=abc"
    )
    query = parse_qs(urlsplit(url).query)
    assert query == {"sample-rate": ["16000"], "call": ["abc"]}
    assert json.loads(applet.answer(url)) == {"url": url}
    request = applet.parse_request({"CallSid": "ca1", "CallFrom": "0987", "To": "0801"})
    assert (request.call_sid, request.from_number, request.to_number) == ("ca1", "0987", "0801")
    with pytest.raises(RemoteProtocolError):
        applet.parse_request({})
    for kwargs in (
        {"sample_rate": 44_100, "parameters": {}},
        {"sample_rate": 8_000, "parameters": {"a": "1", "b": "2", "c": "3", "d": "4"}},
        {"sample_rate": 8_000, "parameters": {"a": "x" * 300}},
    ):
        with pytest.raises(LocalProtocolError):
            applet.stream_url("wss://b.example/m", **kwargs)  # type: ignore[arg-type]
