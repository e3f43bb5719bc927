"""TwiML builders: goldens and the rules of PROTOCOLS.md §1.1."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from phonebridge.errors import LocalProtocolError
from phonebridge.telephony.twilio import twiml

GOLDENS = Path(__file__).parents[1] / "fixtures" / "twiml"


def golden(name: str) -> str:
    return (GOLDENS / name).read_text().rstrip("\n")


def test_connect_stream_golden() -> None:
    assert twiml.connect_stream(
        "wss://bridge.example.com/twilio/media",
        "https://bridge.example.com/twilio/stream-ended",
        {
            "callSid": "CA0123456789abcdef0123456789abcdef",
            "persona": "citysan",
            "from": "+14165550100",
            "to": "+14165550123",
            "token": 'k9&"<x>',
        },
    ) == golden("connect_stream.xml")


def test_connect_stream_with_status_callback_golden() -> None:
    assert twiml.connect_stream(
        "wss://bridge.example.com:8443/pb/twilio/media",
        "https://bridge.example.com:8443/pb/twilio/stream-ended",
        {},
        status_callback="https://bridge.example.com:8443/pb/twilio/stream-status",
    ) == golden("connect_stream_status_callback.xml")


def test_other_goldens() -> None:
    assert twiml.say_and_hangup(
        "All our agents are busy. Please call again later.", voice="Polly.Joanna"
    ) == golden("say_and_hangup.xml")
    assert twiml.dial("+14165550199", "Transferring you to a person.") == golden("dial.xml")
    assert twiml.hangup() == golden("hangup.xml")


def test_connect_is_the_last_verb_and_parameters_round_trip() -> None:
    params = {"token": 'a&b"c<d>', "to": "+14165550123"}
    root = ET.fromstring(
        twiml.connect_stream("wss://h.example/m", "https://h.example/a", params).encode()
    )
    assert [child.tag for child in root] == ["Connect"]
    stream = root.find("Connect/Stream")
    assert stream is not None
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == params


@pytest.mark.parametrize(
    "url",
    [
        "wss://h.example/m?token=abc",
        "wss://h.example/m?",
        "ws://h.example/m",
        "https://h.example/m",
        "wss:///m",
        "/twilio/media",
        "wss://h.example/m#frag",
    ],
)
def test_stream_url_must_be_wss_without_query(url: str) -> None:
    with pytest.raises(LocalProtocolError):
        twiml.connect_stream(url, "https://h.example/a", {})


def test_query_string_error_explains_the_fix() -> None:
    with pytest.raises(LocalProtocolError, match="Parameter"):
        twiml.connect_stream("wss://h.example/m?x=1", "https://h.example/a", {})


@pytest.mark.parametrize("action", ["", "/relative", "ftp://h.example/a"])
def test_action_url_must_be_absolute_http(action: str) -> None:
    with pytest.raises(LocalProtocolError):
        twiml.connect_stream("wss://h.example/m", action, {})


def test_parameter_limits() -> None:
    with pytest.raises(LocalProtocolError):
        twiml.connect_stream("wss://h.example/m", "https://h.example/a", {"": "x"})
    with pytest.raises(LocalProtocolError):
        twiml.connect_stream("wss://h.example/m", "https://h.example/a", {"n": "x" * 500})
    assert "Parameter" in twiml.connect_stream(
        "wss://h.example/m", "https://h.example/a", {"n": "x" * 499}
    )


def test_dial_and_say_validation() -> None:
    with pytest.raises(LocalProtocolError):
        twiml.dial("4165550199")
    with pytest.raises(LocalProtocolError):
        twiml.say_and_hangup("  ")
    root = ET.fromstring(twiml.dial("+14165550199").encode())
    assert [child.tag for child in root] == ["Dial"]
