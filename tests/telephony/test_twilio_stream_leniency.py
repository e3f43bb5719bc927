"""Stream-level decisions of :class:`MediaStreamProtocol` that issue 8's fault tests rely on.

Unknown events are skipped and counted (Twilio adds events over time), but
only when well-formed and for the active stream; a payload one byte over the
limit is refused even where base64 rounding would let it through.
"""

from __future__ import annotations

import base64
import json

import pytest

from phonebridge.errors import RemoteProtocolError
from phonebridge.simulators.phone.wire import TwilioStreamWriter
from phonebridge.telephony.twilio.events import Connected, Media, Start
from phonebridge.telephony.twilio.protocol import (
    MAX_MEDIA_PAYLOAD_BYTES,
    MediaStreamProtocol,
    UnknownEventError,
    parse_message,
)

SID = "MZ" + "1" * 32


def started() -> tuple[MediaStreamProtocol, TwilioStreamWriter]:
    writer = TwilioStreamWriter(SID, "AC" + "2" * 32, "CA" + "3" * 32)
    stream = MediaStreamProtocol()
    assert isinstance(stream.receive(writer.connected(), 0.0), Connected)
    assert isinstance(stream.receive(writer.start({}), 0.0), Start)
    return stream, writer


def test_parser_names_the_unknown_event() -> None:
    with pytest.raises(UnknownEventError) as raised:
        parse_message(json.dumps({"event": "transcription", "streamSid": SID}))
    assert raised.value.event == "transcription"
    assert raised.value.stream_sid == SID


def test_unknown_event_is_skipped_and_counted_and_the_stream_goes_on() -> None:
    stream, writer = started()
    assert stream.receive(json.dumps({"event": "new", "streamSid": SID, "x": {}}), 0.1) is None
    assert stream.receive(json.dumps({"event": "other"}), 0.1) is None
    assert isinstance(stream.receive(writer.media(b"\xff" * 160, 0), 0.2), Media)
    assert stream.stats(0.2).unknown_events == 2


def test_unknown_event_before_connected_does_not_break_connected() -> None:
    writer = TwilioStreamWriter(SID, "AC" + "2" * 32, "CA" + "3" * 32)
    stream = MediaStreamProtocol()
    assert stream.receive(json.dumps({"event": "hello"}), 0.0) is None
    assert isinstance(stream.receive(writer.connected(), 0.0), Connected)


def test_unknown_event_for_another_stream_is_an_error() -> None:
    stream, _ = started()
    with pytest.raises(RemoteProtocolError, match="not the active"):
        stream.receive(json.dumps({"event": "new", "streamSid": "MZ" + "9" * 32}), 0.1)


def test_event_must_still_be_a_string() -> None:
    stream, _ = started()
    with pytest.raises(RemoteProtocolError):
        stream.receive(json.dumps({"event": None, "streamSid": SID}), 0.1)


@pytest.mark.parametrize("extra", [1, 2])
def test_payload_just_over_the_limit_is_refused(extra: int) -> None:
    # 8001 and 8002 bytes encode to as many base64 characters as 8000 bytes.
    stream, writer = started()
    doc = json.loads(writer.media(b"", 0))
    doc["media"]["payload"] = base64.b64encode(b"\xff" * (MAX_MEDIA_PAYLOAD_BYTES + extra)).decode()
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        stream.receive(json.dumps(doc), 0.1)
