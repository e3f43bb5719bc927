"""Fuzzing what the model servers send us: the three providers' frame parsers.

- Self-hosted PersonaPlex and PolarGrid (PROTOCOLS.md §2.2, §3): binary frames
  whose first byte is the kind; ``0x01`` carries Ogg/Opus bytes that may be
  split, corrupt, or valid pages holding packets libopus refuses.
- fal (§4): binary msgpack maps ``{audio, text}`` and JSON text control
  messages (``x-fal-error``).

The property: :meth:`receive` returns events or raises
:class:`RemoteProtocolError`, never another exception, so the session edge
(models/wsclient.py) can end the call with ``PROTOCOL_ERROR`` instead of
crashing the call task. Every event it returns is well formed.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.audio.ogg import FLAG_BOS, OggPage, OpusHead, opus_tags
from phonebridge.errors import RemoteProtocolError
from phonebridge.models.base import AgentAudio, AgentText, SessionEnded
from phonebridge.models.fal_protocol import FalConfig, FalProtocol
from phonebridge.models.personaplex_protocol import OggStreamProtocol, Ready, WireEvent
from phonebridge.models.polargrid_protocol import PolarGridProtocol

from .hostile import FUZZ_SETTINGS, deep_json, huge_number_texts, json_values

# -- self-hosted and PolarGrid: kind byte + payload ----------------------------


def ogg_pages(packets: list[bytes], serial: int = 9) -> bytes:
    out = b""
    for sequence, packet in enumerate(packets):
        laces = [255] * (len(packet) // 255) + [len(packet) % 255]
        out += OggPage(
            FLAG_BOS if sequence == 0 else 0, 0, serial, sequence, tuple(laces), packet
        ).to_bytes()
    return out


HEADERS = ogg_pages([OpusHead(1, 1, 3840, 24000, 0, 0).to_bytes(), opus_tags("srv")])
opus_like = st.builds(
    lambda toc, rest: bytes([toc]) + rest, st.integers(0, 255), st.binary(max_size=60)
)

kind_frames: st.SearchStrategy[bytes | str] = (
    st.binary(max_size=80)  # any kind byte, any payload, the empty frame included
    | st.builds(
        lambda kind, rest: bytes([kind]) + rest, st.integers(0, 255), st.binary(max_size=40)
    )
    | st.just(b"\x00")
    | st.builds(lambda text: b"\x02" + text, st.binary(max_size=40))  # text: not UTF-8 either
    | st.lists(opus_like, min_size=1, max_size=3).map(
        lambda packets: (
            b"\x01"
            + ogg_pages([OpusHead(1, 1, 3840, 24000, 0, 0).to_bytes(), opus_tags("s"), *packets])
        )
    )
    | st.binary(max_size=200).map(lambda junk: b"\x01" + HEADERS + junk)
    | st.text(max_size=20)
)


def check_events(events: list[WireEvent]) -> None:
    for event in events:
        assert isinstance(event, Ready | AgentAudio | AgentText | SessionEnded)
        if isinstance(event, AgentAudio):
            assert len(event.pcm) % 2 == 0


def feed(protocol: OggStreamProtocol | FalProtocol, frames: list[bytes | str]) -> None:
    for frame in frames:
        try:
            check_events(protocol.receive(frame))
        except RemoteProtocolError:
            return  # the session ends with PROTOCOL_ERROR and closes the socket


@settings(**FUZZ_SETTINGS)
@given(frames=st.lists(kind_frames, max_size=6))
def test_self_hosted_frames_give_events_or_remote_error(frames: list[bytes | str]) -> None:
    feed(OggStreamProtocol(), [b"\x00", *frames])
    feed(OggStreamProtocol(), frames)  # and before any handshake


@settings(**FUZZ_SETTINGS)
@given(frames=st.lists(kind_frames, max_size=6))
def test_polargrid_frames_give_events_or_remote_error(frames: list[bytes | str]) -> None:
    protocol = PolarGridProtocol()
    feed(protocol, [b"\x00", *frames])
    # What the client sends stays valid whatever the server sent before.
    for frame in protocol.control_frame("eos") + protocol.text_frame("hi"):
        assert frame[0] in (0x02, 0x03)


# -- fal: msgpack and JSON control messages -------------------------------------

msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=41)  # odd lengths: half a sample
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12))
)
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    msgpack_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
fal_replies = st.fixed_dictionaries(
    {},
    optional={"audio": msgpack_values, "text": msgpack_values, "extra": msgpack_values},
).map(lambda reply: msgpack.packb(reply, use_bin_type=True))


def pack_any(value: Any) -> bytes:
    packed = msgpack.packb(value, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def control_text(error: str, reason: str) -> str:
    return '{"type":"x-fal-error","error":' + error + ',"reason":' + reason + "}"


# Hand-made msgpack that the encoder would never write (msgpack spec, "Formats").
crafted_msgpack = st.sampled_from(
    [
        b"\xc7\x03\xff\x00\x00\x00",  # timestamp extension of an invalid length
        b"\xd7\xff" + b"\xff" * 8,  # timestamp with nanoseconds past 999999999
        b"\x81\x80\x00",  # a map as a map key
        b"\x81\xa5audio\xa2\xff\xfe",  # str that is not UTF-8
        b"\x81\xa5audio\xc6\xff\xff\xff\xff",  # bin claiming 4 GiB
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 G items
        b"\xdf\xff\xff\xff\xff",  # map claiming 4 G pairs
        b"\xc1",  # the one never-used byte
        b"\x82\xa5audio\xc4\x02\x00\x00\xa5audio\xc4\x01\x00",  # duplicate key, odd PCM
    ]
)
raw_json = json_values.map(json.dumps) | huge_number_texts | st.integers(500, 5000).map(deep_json)
fal_frames: st.SearchStrategy[bytes | str] = (
    fal_replies
    | msgpack_values.map(pack_any)
    | crafted_msgpack
    | st.binary(max_size=60)
    | st.builds(lambda a, b: a + b, fal_replies, st.binary(min_size=1, max_size=8))  # extra data
    | st.integers(1, 2000).map(lambda depth: b"\x91" * depth + b"\xc0")  # nested arrays
    | st.builds(control_text, raw_json, raw_json)
    | raw_json
    | st.text(max_size=30)
)


@settings(**FUZZ_SETTINGS)
@given(frames=st.lists(fal_frames, max_size=6))
def test_fal_frames_give_events_or_remote_error(frames: list[bytes | str]) -> None:
    protocol = FalProtocol(FalConfig(prompt="fuzz"))
    protocol.on_open()
    feed(protocol, frames)


def test_fal_control_messages_past_the_json_decoder_limits() -> None:
    # Found by the fuzzer: json.loads raised RecursionError and ValueError (int digit
    # limit) out of receive(), which only caught JSONDecodeError.
    protocol = FalProtocol(FalConfig(prompt="fuzz"))
    for message in (deep_json(100_000), control_text("9" * 5000, '""'), "-" + "9" * 5000):
        assert protocol.receive(message) == []
    ended = protocol.receive(control_text(deep_json(200), '"x"'))
    assert len(ended) == 1
    assert isinstance(ended[0], SessionEnded)
