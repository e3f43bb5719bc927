"""Sans-I/O cores of the three providers: no sockets, no event loop (PROTOCOLS.md §2-§4)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phonebridge.audio.ogg import OggOpusReader, OggPageReader
from phonebridge.audio.opus import DEFAULT_COMPLEXITY, OpusDecoder
from phonebridge.audio.opus_stream import OggOpusDecodeStream
from phonebridge.audio.resample import Downsampler24kTo8k, Upsampler8kTo24k
from phonebridge.errors import (
    ConfigError,
    LocalProtocolError,
    ModelAuthError,
    ModelRateLimited,
    ModelUnavailable,
    RemoteProtocolError,
)
from phonebridge.models.base import (
    VOICES,
    AgentAudio,
    AgentText,
    EndReason,
    SessionEnded,
    SessionRequest,
)
from phonebridge.models.fal_protocol import FalConfig, FalProtocol, auth_headers, build_url
from phonebridge.models.personaplex_protocol import (
    Kind,
    OggStreamProtocol,
    Ready,
    build_chat_url,
)
from phonebridge.models.polargrid_protocol import PolarGridProtocol, subprotocols
from phonebridge.models.polargrid_protocol import build_url as polargrid_url
from phonebridge.models.upgrade_errors import error_for_status, parse_retry_after
from phonebridge.simulators.personaplex.server_ogg import ServerOggWriter
from phonebridge.simulators.personaplex.testing import REQUEST, SILENCE, tone


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


# -- self-hosted URL (§2.1) -----------------------------------------------------


def test_chat_url_has_only_prompt_and_voice_with_pt() -> None:
    url = build_chat_url("ws://gpu1:8998", REQUEST)
    assert urlsplit(url).path == "/api/chat"
    assert query(url) == {"text_prompt": [REQUEST.prompt], "voice_prompt": ["NATF2.pt"]}


@given(
    prompt=st.text(min_size=1).filter(lambda p: p.strip()),
    voice=st.sampled_from(sorted(VOICES)),
)
def test_chat_url_never_carries_seed_or_sampling(prompt: str, voice: str) -> None:
    params = query(build_chat_url("wss://h/", SessionRequest(prompt, voice)))
    assert set(params) == {"text_prompt", "voice_prompt"}
    assert params["text_prompt"] == [prompt]
    assert params["voice_prompt"] == [voice + ".pt"]


@pytest.mark.parametrize(
    ("prompt", "voice"),
    [("", "NATF2"), ("   ", "NATF2"), ("hi", "NATF2.pt"), ("hi", "../../etc/passwd"), ("hi", "X")],
)
def test_chat_url_refuses_what_crashes_the_server(prompt: str, voice: str) -> None:
    with pytest.raises(ConfigError):
        build_chat_url("ws://h:8998", SessionRequest(prompt, voice))


def test_chat_url_refuses_non_websocket_scheme() -> None:
    with pytest.raises(ConfigError):
        build_chat_url("http://h:8998", REQUEST)


# -- the Ogg stream core (§2.2-§2.4) ----------------------------------------------


def test_nothing_is_sent_before_the_handshake() -> None:
    core = OggStreamProtocol()
    assert all(core.encode_audio(tone(i)) == [] for i in range(10))
    assert core.receive(bytes([Kind.HANDSHAKE])) == [Ready()]
    assert core.ready


def test_first_frame_starts_with_bos_and_there_is_only_one() -> None:
    core = OggStreamProtocol()
    core.receive(b"\x00")
    frames = [f for i in range(50) for f in core.encode_audio(tone(i))]
    assert all(f[0] == Kind.AUDIO for f in frames)
    pages = []
    reader = OggPageReader()
    for frame in frames:
        pages += reader.push(frame[1:])
    assert pages[0].bos
    assert pages[0].body.startswith(b"OpusHead")
    assert sum(p.bos for p in pages) == 1
    assert len(pages) == 2 + 50 // 4  # head, tags, one page per 80 ms model step


def test_each_message_completes_one_model_step_as_its_last_frame_is_encoded() -> None:
    # The server steps on 1920 decoded samples at 24 kHz and trims no
    # pre-skip (PROTOCOLS.md §2.3-2.4), so step k is packets 4k..4k+3: the
    # page for it must leave with frame 4k+3, not later, and hold exactly it.
    core = OggStreamProtocol()
    core.receive(b"\x00")
    sent_at = {i: core.encode_audio(tone(i)) for i in range(40)}
    assert [i for i, frames in sent_at.items() if frames] == [0, *range(3, 40, 4)]
    pages, packets = OggPageReader(), OggOpusReader()
    server_decoder = OpusDecoder(24000)
    decoded = 0
    for i, frames in sent_at.items():
        for frame in frames:
            audio_pages = [p for p in pages.push(frame[1:]) if p.granule_position > 0]
            assert [p.granule_position for p in audio_pages] == ([(i + 1) * 960] if i else [])
            for packet in packets.push(frame[1:]):
                decoded += len(server_decoder.decode(packet)) // 2
        assert decoded == (i + 1) // 4 * 1920  # whole model steps, each on time


def test_audio_text_and_unknown_kinds_from_the_server() -> None:
    core = OggStreamProtocol()
    writer = ServerOggWriter()
    assert core.receive(b"\x01" + writer.headers()) == []  # headers decode to nothing
    (audio,) = core.receive(b"\x01" + writer.step(bytes(3840)))  # 80 ms at 24 kHz
    assert isinstance(audio, AgentAudio)
    assert len(audio.pcm) == 1280  # the same 80 ms, decoded at the line's 8 kHz
    assert core.receive(" text frame") == []
    assert core.receive(b"\x02 hello") == [AgentText(" hello")]
    assert core.receive(b"\x05whatever") == []


def test_corrupt_server_ogg_is_a_remote_protocol_error() -> None:
    core = OggStreamProtocol()
    page = bytearray(ServerOggWriter().headers())
    page[30] ^= 0xFF  # breaks the CRC
    with pytest.raises(RemoteProtocolError):
        core.receive(b"\x01" + bytes(page))
    with pytest.raises(RemoteProtocolError):
        core.receive(b"")


def test_frames_must_be_20_ms() -> None:
    with pytest.raises(LocalProtocolError):
        OggStreamProtocol().encode_audio(b"\0" * 100)


def test_close_is_remote_closed_with_code() -> None:
    ended = OggStreamProtocol().end_for_close(None, "")
    assert ended == SessionEnded(EndReason.REMOTE_CLOSED, "code 1006")


def test_sent_stream_decodes_back() -> None:
    core = OggStreamProtocol()
    core.receive(b"\x00")
    decoder = OggOpusDecodeStream(sample_rate=8000)
    pcm = b"".join(decoder.push(f[1:]) for i in range(24) for f in core.encode_audio(tone(i)))
    assert len(pcm) == 24 * len(SILENCE)


# -- PolarGrid (§3) -------------------------------------------------------------


def test_polargrid_url_and_subprotocol_auth() -> None:
    url = polargrid_url(REQUEST, region="yul-01", api_key="pg_secret")
    parts = urlsplit(url)
    assert parts.netloc == "api.yul-01.edge.polargrid.ai"
    assert parts.path == "/v1/voice/personaplex"
    assert query(url) == {"voice": ["NATF2"], "persona": [REQUEST.prompt]}
    assert "pg_secret" not in url
    assert subprotocols("pg_secret") == ["bearer.pg_secret"]


def test_polargrid_query_auth_puts_token_in_url() -> None:
    url = polargrid_url(REQUEST, api_key="pg_secret", auth="query")
    assert query(url)["token"] == ["pg_secret"]
    assert subprotocols("pg_secret", "query") == []


@pytest.mark.parametrize("region", ["", "evil.com/x", "a b"])
def test_polargrid_region_must_be_a_host_label(region: str) -> None:
    with pytest.raises(ConfigError):
        polargrid_url(REQUEST, region=region)


def test_polargrid_control_and_text_frames_only_when_ready() -> None:
    core = PolarGridProtocol()
    assert core.control_frame("eos") == []
    core.receive(b"\x00")
    assert core.control_frame("eos") == [b"\x03eos"]
    assert core.control_frame("bos") == [b"\x03bos"]
    assert core.text_frame("héllo") == [b"\x02" + "héllo".encode()]


# -- upgrade errors (§3) --------------------------------------------------------


@pytest.mark.parametrize("status", [401, 402, 403])
def test_auth_statuses_are_not_retryable(status: int) -> None:
    error = error_for_status("polargrid", status)
    assert isinstance(error, ModelAuthError)
    assert not error.retryable


def test_429_carries_retry_after() -> None:
    error = error_for_status("polargrid", 429, "12")
    assert isinstance(error, ModelRateLimited)
    assert error.retryable
    assert error.retry_after == 12.0


@pytest.mark.parametrize("status", [404, 502, 500])
def test_unavailable_statuses_are_retryable_elsewhere(status: int) -> None:
    error = error_for_status("fal", status)
    assert isinstance(error, ModelUnavailable)
    assert error.retryable


def test_retry_after_forms() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("junk") is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(date) is None  # no clock given: no guess
    assert parse_retry_after(date, now_epoch=1445412470.0) == 10.0


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        (" 12 ", 12.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 10.0),  # obsolete RFC 850 form
        ("Wed Oct 21 07:28:00 2015", 10.0),  # obsolete asctime: no zone, and it is GMT
        ("Wed, 21 Oct 2015 07:28:00 -0000", 10.0),  # "-0000": no zone either
        ("Wed, 21 Oct 2015 06:00:00 GMT", 0.0),  # already past: retry now
        ("\u00b2", None),  # a Unicode digit, not delta-seconds (float() refuses it)
        ("-5", None),
        ("1.5", None),  # delta-seconds is a whole number
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
        ("", None),
    ],
)
def test_retry_after_every_http_form(value: str, wait: float | None) -> None:
    assert parse_retry_after(value, now_epoch=1445412470.0) == wait


@given(st.text(max_size=40), st.floats(min_value=0, max_value=4e9))
def test_retry_after_is_a_wait_or_none_for_any_header(value: str, now: float) -> None:
    wait = parse_retry_after(value, now_epoch=now)
    assert wait is None or wait >= 0.0


# -- fal (§4) -------------------------------------------------------------------


def test_fal_sends_80_ms_msgpack_with_full_config() -> None:
    core = FalProtocol(FalConfig(prompt="p", voice="NATM1"))
    assert core.encode_audio(SILENCE) == []  # not ready before the socket opens
    core.on_open()
    sent = [m for i in range(8) for m in core.encode_audio(tone(i))]
    assert len(sent) == 2
    for message in sent:
        fields = msgpack.unpackb(message)
        assert len(fields["audio"]) == 3840
        assert {k: v for k, v in fields.items() if k != "audio"} == {
            "prompt": "p",
            "voice": "NATM1",
            "temperature_audio": 0.8,
            "temperature_text": 0.7,
            "top_k_audio": 250,
            "top_k_text": 25,
        }
    # fal carries 24 kHz: the line's frames go through the polyphase upsampler.
    upsampler = Upsampler8kTo24k()
    assert b"".join(msgpack.unpackb(m)["audio"] for m in sent) == b"".join(
        upsampler.push(tone(i)) for i in range(8)
    )


def test_fal_seed_only_when_configured() -> None:
    assert "seed" not in FalConfig(prompt="p").fields()
    assert FalConfig(prompt="p", seed=3).fields()["seed"] == 3


def test_fal_replies_and_control_messages() -> None:
    core = FalProtocol(FalConfig(prompt="p"))
    reply = msgpack.packb({"audio": b"\1\0" * 30, "text": " hi"})
    # fal's 24 kHz PCM reaches the session at the line's 8 kHz (polyphase filter).
    assert core.receive(reply) == [
        AgentAudio(Downsampler24kTo8k().push(b"\1\0" * 30)),
        AgentText(" hi"),
    ]
    assert core.receive(json.dumps({"type": "x-fal-message", "action": "timings"})) == []
    (timeout,) = core.receive(
        json.dumps({"type": "x-fal-error", "error": "TIMEOUT", "reason": "idle"})
    )
    assert timeout == SessionEnded(EndReason.TIMEOUT, "TIMEOUT: idle")
    (internal,) = core.receive(json.dumps({"type": "x-fal-error", "error": "INTERNAL_ERROR"}))
    assert internal == SessionEnded(EndReason.REMOTE_ERROR, "INTERNAL_ERROR")
    with pytest.raises(RemoteProtocolError):
        core.receive(b"\xc1")  # never-used msgpack byte


def test_fal_close_codes() -> None:
    core = FalProtocol(FalConfig(prompt="p"))
    assert core.end_for_close(1000, "").reason is EndReason.REMOTE_CLOSED
    assert core.end_for_close(1011, "boom").reason is EndReason.REMOTE_ERROR
    assert core.end_for_close(None, "").reason is EndReason.REMOTE_ERROR


def test_fal_url_and_header() -> None:
    assert build_url() == "wss://fal.run/fal-ai/personaplex/realtime"
    assert build_url("ws://127.0.0.1:1/") == "ws://127.0.0.1:1/fal-ai/personaplex/realtime"
    assert auth_headers("k-123") == {"Authorization": "Key k-123"}


@pytest.mark.parametrize(("rate", "expected"), [(8000, DEFAULT_COMPLEXITY), (16000, 5), (24000, 5)])
def test_wideband_legs_encode_at_the_wideband_complexity(rate: int, expected: int) -> None:
    # Narrowband keeps the cheap setting the load tables were measured with; a
    # wideband leg pays for the quality it exists for (bench/bench_carrier_pesq.py).
    assert OggStreamProtocol(sample_rate=rate).encoder_complexity == expected
    assert PolarGridProtocol(sample_rate=rate).encoder_complexity == expected
    # An operator's explicit choice wins at every rate.
    assert OggStreamProtocol(sample_rate=rate, complexity=3).encoder_complexity == 3
