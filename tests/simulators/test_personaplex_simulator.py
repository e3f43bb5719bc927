"""The PersonaPlex simulator reproduces PROTOCOLS.md §2-§4, checked with a raw client."""

from __future__ import annotations

import argparse
import asyncio
import json
from urllib.parse import urlencode

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from phonebridge.audio.ogg import OggPageReader, parse_opus_head
from phonebridge.audio.opus import packet_samples_48k
from phonebridge.audio.opus_stream import OggOpusDecodeStream, OggOpusEncodeStream
from phonebridge.simulators.cli import register
from phonebridge.simulators.personaplex import PersonaPlexSimulator
from phonebridge.simulators.personaplex.testing import GUARD, SILENCE, tone


def line_encoder() -> OggOpusEncodeStream:
    """An Ogg/Opus stream fed 8 kHz frames, as the bridge's client sends."""
    return OggOpusEncodeStream(sample_rate=8000)


GOOD_QUERY = {"text_prompt": "Be brief.", "voice_prompt": "NATM1.pt"}
QUIET = 0.3  # how long "nothing arrives" is watched; never a timing assertion on the server


def chat_url(sim: PersonaPlexSimulator, **query: str) -> str:
    return f"{sim.url}/api/chat?{urlencode(query)}"


def raw(url: str, **options: object) -> connect:
    return connect(url, ping_interval=None, compression=None, close_timeout=1, **options)  # type: ignore[arg-type]


async def handshake(ws: ClientConnection) -> bytes:
    """Wait for 0x00 and return the server's header message (0x01 + two pages)."""
    assert await ws.recv(decode=False) == b"\x00"
    headers = await ws.recv(decode=False)
    assert isinstance(headers, bytes)
    return headers


async def expect_closed(ws: ClientConnection) -> ConnectionClosed:
    try:
        while True:
            await ws.recv(decode=False)
    except ConnectionClosed as closed:
        return closed


async def expect_silence(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(QUIET):
            await ws.recv(decode=False)


def stream_frames(
    encoder: OggOpusEncodeStream, frames: int, *, headers: bool = True
) -> list[bytes]:
    out = [b"\x01" + encoder.headers()] if headers else []
    out += [b"\x01" + encoder.push(tone(i)) for i in range(frames)]
    return out


# -- §2.1 query parameters ------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {**GOOD_QUERY, "seed": "42"},
        {"voice_prompt": "NATM1.pt"},
        {"text_prompt": "hi", "voice_prompt": "NATM1"},
        {"text_prompt": "hi", "voice_prompt": "../x.pt"},
    ],
    ids=["seed", "missing-prompt", "voice-without-pt", "path-voice"],
)
async def test_bad_query_crashes_the_handler_with_1006(query: dict[str, str]) -> None:
    async with PersonaPlexSimulator() as sim, raw(chat_url(sim, **query)) as ws:
        closed = await expect_closed(ws)
    assert closed.rcvd is None  # no close frame: 1006
    assert sim.connections[0].close_code == 1006
    assert sim.connections[0].handshake_at is None


async def test_empty_prompt_crashes_after_conditioning() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.05) as sim:
        async with raw(chat_url(sim, text_prompt="", voice_prompt="NATF0.pt")) as ws:
            closed = await expect_closed(ws)
        record = await sim.wait_for_close()
    assert closed.rcvd is None
    assert record.session_started_at is not None
    assert record.handshake_at is None


async def test_wrong_path_is_404() -> None:
    async with PersonaPlexSimulator() as sim:
        with pytest.raises(InvalidStatus) as caught:
            async with raw(f"{sim.url}/chat?{urlencode(GOOD_QUERY)}"):
                pass
    assert caught.value.response.status_code == 404


# -- §2.3 timeline ----------------------------------------------------------------


async def test_input_during_conditioning_is_discarded() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.2) as sim:
        async with asyncio.timeout(GUARD), raw(chat_url(sim, **GOOD_QUERY)) as ws:
            early = line_encoder()
            for frame in stream_frames(early, 4):  # BOS and all, before the handshake
                await ws.send(frame)
            await handshake(ws)
            # The BOS page went with the discarded input: audio now is "before BOS".
            await ws.send(b"\x01" + early.push(SILENCE))
            closed = await expect_closed(ws)
        record = await sim.wait_for_close()
    assert record.pre_handshake_messages == 5
    assert record.bos_pages == 0
    assert record.end == "audio before the BOS page"
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1000


async def test_second_bos_page_kills_the_session() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.01) as sim:
        async with asyncio.timeout(GUARD), raw(chat_url(sim, **GOOD_QUERY)) as ws:
            await handshake(ws)
            for frame in stream_frames(line_encoder(), 4):
                await ws.send(frame)
            for frame in stream_frames(line_encoder(), 4):  # encoder restarted
                await ws.send(frame)
            closed = await expect_closed(ws)
        record = await sim.wait_for_close()
    assert record.bos_pages == 2
    assert record.end == "second BOS page (encoder restarted)"
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1000


async def test_bad_crc_kills_the_session() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.01) as sim:
        async with asyncio.timeout(GUARD), raw(chat_url(sim, **GOOD_QUERY)) as ws:
            await handshake(ws)
            encoder = line_encoder()
            await ws.send(b"\x01" + encoder.headers())
            page = bytearray(encoder.push(SILENCE))
            page[-1] ^= 0x55
            await ws.send(b"\x01" + bytes(page))
            closed = await expect_closed(ws)
        record = await sim.wait_for_close()
    assert record.end == "bad Ogg page (CRC)"
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1000


async def test_junk_between_pages_is_skipped() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.01) as sim:
        async with asyncio.timeout(GUARD), raw(chat_url(sim, **GOOD_QUERY)) as ws:
            await handshake(ws)
            encoder = line_encoder()
            await ws.send(b"\x01" + encoder.headers())
            for i in range(4):
                await ws.send(b"\x01junk" + encoder.push(tone(i)))
            assert (await ws.recv(decode=False))[0] == 0x01  # one step's page: still alive
        record = await sim.wait_for_close()
    assert record.input_samples == 1920


async def test_no_output_without_input() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.01) as sim:
        async with asyncio.timeout(GUARD), raw(chat_url(sim, **GOOD_QUERY)) as ws:
            await handshake(ws)
            await expect_silence(ws)  # no clock of its own
            await ws.send(b"\x01" + line_encoder().headers())
            await expect_silence(ws)  # headers are not audio
        record = await sim.wait_for_close()
    assert record.frames_out == 0


async def test_one_80ms_page_per_80ms_of_input_with_sphn_headers() -> None:
    async with (
        PersonaPlexSimulator(reply="echo", conditioning_delay=0.01) as sim,
        asyncio.timeout(GUARD),
        raw(chat_url(sim, **GOOD_QUERY)) as ws,
    ):
        header_message = await handshake(ws)
        for frame in stream_frames(line_encoder(), 22):  # 440 ms: 5 steps + 40 ms
            await ws.send(frame)
        replies = [await ws.recv(decode=False) for _ in range(5)]
        await expect_silence(ws)  # the 40 ms left over make no page
    header_pages = OggPageReader().push(header_message[1:])
    assert [p.bos for p in header_pages] == [True, False]
    head = parse_opus_head(header_pages[0].body)
    assert head.pre_skip == 3840
    assert head.input_sample_rate == 24000
    assert header_pages[1].body.startswith(b"OpusTags")
    reader = OggPageReader()
    pages = [page for message in replies for page in reader.push(message[1:])]
    assert all(message[0] == 0x01 for message in replies)
    assert len(pages) == 5  # exactly one page per step
    assert [len(p.segments) == 1 or p.segments[-1] < 255 for p in pages] == [True] * 5
    assert [packet_samples_48k(p.body) for p in pages] == [3840] * 5  # one 80 ms packet each
    assert [p.granule_position for p in pages] == [1920, 3840, 5760, 7680, 9600]  # 24 kHz


def peak(pcm: bytes) -> int:
    return max(
        abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)
    )


async def test_echo_is_delayed_two_steps_and_text_follows_audio() -> None:
    async with (
        PersonaPlexSimulator(reply="echo", conditioning_delay=0.01) as sim,
        asyncio.timeout(GUARD),
        raw(chat_url(sim, **GOOD_QUERY)) as ws,
    ):
        header_message = await handshake(ws)
        for frame in stream_frames(line_encoder(), 25 * 4):
            await ws.send(frame)
        messages = [await ws.recv(decode=False) for _ in range(26)]  # 25 pages + one text piece
    assert [m[0] for m in messages[-2:]] == [0x01, 0x02]  # text follows its step's page
    assert messages[-1] == b"\x02 (echo)"
    decoder = OggOpusDecodeStream()
    decoder.push(header_message[1:])
    steps = [decoder.push(m[1:]) for m in messages if m[0] == 0x01]
    assert all(len(step) == 3840 for step in steps)
    assert peak(steps[0]) < 500  # the delay line's silence (~160 ms)
    assert peak(steps[1]) < 500
    assert peak(steps[3]) > 1000  # then the caller's tone comes back


# -- §2.5 one session at a time ------------------------------------------------------


async def test_second_connection_hangs_silently_until_the_first_ends() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.01) as sim:
        async with asyncio.timeout(GUARD):
            first = await raw(chat_url(sim, **GOOD_QUERY))
            await handshake(first)
            async with raw(chat_url(sim, text_prompt="other", voice_prompt="VARF4.pt")) as second:
                await expect_silence(second)  # upgraded, then nothing, no error
                await first.close()
                await handshake(second)  # served once the first is gone
        await sim.wait_for_close(1)
    assert sim.connections[1].waited_behind_busy
    assert not sim.connections[0].waited_behind_busy


async def test_fault_stall_stops_output_but_keeps_reading() -> None:
    async with PersonaPlexSimulator(conditioning_delay=0.01, stall_after=0.0) as sim:
        async with asyncio.timeout(GUARD), raw(chat_url(sim, **GOOD_QUERY)) as ws:
            await handshake(ws)
            for frame in stream_frames(line_encoder(), 8):
                await ws.send(frame)
            await expect_silence(ws)
        record = await sim.wait_for_close()
    assert record.input_samples == 3840
    assert record.frames_out == 0


# -- §3 PolarGrid -----------------------------------------------------------------


async def test_polargrid_auth_and_rate_limit() -> None:
    query = urlencode({"voice": "NATF0", "persona": "hi"})
    async with PersonaPlexSimulator(flavour="polargrid", api_key="pg_good") as sim:
        url = f"{sim.url}/v1/voice/personaplex?{query}"
        with pytest.raises(InvalidStatus) as bad:
            async with raw(url, subprotocols=["bearer.pg_bad"]):
                pass
        async with raw(url, subprotocols=["bearer.pg_good"]) as ws:
            assert ws.subprotocol == "bearer.pg_good"
            await handshake(ws)
        async with raw(url + "&token=pg_good") as ws:
            await handshake(ws)
    assert bad.value.response.status_code == 401
    async with PersonaPlexSimulator(flavour="polargrid", reject_status=429, retry_after=3) as sim:
        with pytest.raises(InvalidStatus) as limited:
            async with raw(f"{sim.url}/v1/voice/personaplex?{query}"):
                pass
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "3"


async def test_polargrid_requires_bos_first_too() -> None:
    query = urlencode({"voice": "NATF0", "persona": "hi"})
    async with PersonaPlexSimulator(flavour="polargrid", conditioning_delay=0.01) as sim:
        url = f"{sim.url}/v1/voice/personaplex?{query}&token=k"
        async with asyncio.timeout(GUARD), raw(url) as ws:
            await handshake(ws)
            await ws.send(b"\x01" + stream_frames(line_encoder(), 1)[1][1:])
            closed = await expect_closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1000


# -- §4 fal ---------------------------------------------------------------------------


async def test_fal_auth_msgpack_replies_and_idle_timeout() -> None:
    async with PersonaPlexSimulator(flavour="fal", idle_timeout=0.2, api_key="fk") as sim:
        url = f"{sim.url}/fal-ai/personaplex/realtime"
        with pytest.raises(InvalidStatus) as bad:
            async with raw(url, additional_headers={"Authorization": "Key nope"}):
                pass
        async with (
            asyncio.timeout(GUARD),
            raw(url, additional_headers={"Authorization": "Key fk"}) as ws,
        ):
            await ws.send(msgpack.packb({"audio": bytes(3840), "prompt": "p"}))
            reply = msgpack.unpackb(await ws.recv(decode=False))
            timings = json.loads(await ws.recv())
            error = json.loads(await ws.recv())  # no more input: fal times out
            closed = await expect_closed(ws)
        record = await sim.wait_for_close()
    assert bad.value.response.status_code == 401
    assert len(reply["audio"]) == 3840
    assert timings["type"] == "x-fal-message"
    assert error["type"] == "x-fal-error"
    assert error["error"] == "TIMEOUT"
    assert closed.rcvd is not None
    assert record.fal_configs_incomplete == 1  # voice, temperatures... were missing


# -- CLI -------------------------------------------------------------------------------


def test_cli_registers_simulate_personaplex(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="phonebridge")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "simulate",
            "personaplex",
            "--port",
            "9000",
            "--flavour",
            "fal",
            "--reply",
            "echo",
            "--conditioning-delay",
            "0.5",
            "--api-key",
            "k",
        ]
    )
    assert (args.port, args.flavour, args.reply, args.conditioning_delay) == (
        9000,
        "fal",
        "echo",
        0.5,
    )
    assert callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "personaplex", "--help"])
    assert "test double" in capsys.readouterr().out.lower()
