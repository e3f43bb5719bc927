"""Twilio Media Streams JSON cost per 20 ms frame (PROTOCOLS.md §1.2-§1.3).

The outbound builders run ~50 times per second per call, the parser as often
inbound. Compares the string-concatenation builder with json.dumps of a dict,
and times parsing a real-shaped inbound media message.

Run: .venv/bin/python bench/bench_twilio.py
"""

from __future__ import annotations

import base64
import json
import timeit

from phonebridge.simulators.phone.wire import TwilioStreamWriter
from phonebridge.telephony.twilio.protocol import MediaStreamProtocol, media_message, parse_message

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
FRAME = bytes(range(160))


def dumps_media(stream_sid: str, mulaw: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "streamSid": stream_sid,
            "media": {"payload": base64.b64encode(mulaw).decode()},
        },
        separators=(",", ":"),
    )


def per_call_us(stmt: object, number: int = 200_000) -> float:
    timer = timeit.Timer(stmt)  # type: ignore[arg-type]
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main() -> None:
    assert json.loads(media_message(SID, FRAME)) == json.loads(dumps_media(SID, FRAME))
    writer = TwilioStreamWriter(SID, "AC" + "0" * 32, "CA" + "0" * 32)
    writer.start({})
    inbound = writer.media(FRAME, 20)
    proto = MediaStreamProtocol()
    proto.receive(writer.start({}), 0.0)
    rows = {
        "media_message (concat)": per_call_us(lambda: media_message(SID, FRAME)),
        "json.dumps dict": per_call_us(lambda: dumps_media(SID, FRAME)),
        "parse_message(media)": per_call_us(lambda: parse_message(inbound), 100_000),
        "MediaStreamProtocol.receive(media)": per_call_us(
            lambda: proto.receive(inbound, 0.0), 100_000
        ),
    }
    for name, value in rows.items():
        print(f"{name:38s} {value:6.2f} µs/frame")


if __name__ == "__main__":
    main()
