"""What the line's rate means on the wire to a hosted provider (docs/providers.md, "Line rate").

Pins the fact the document states, so a change to it (the rate-aware leg
seam, where a wideband leg encodes from 16/24 kHz) fails here until the
document is updated with it: today an 8 kHz session's Ogg Opus stream to
PolarGrid declares an OpusHead input rate of 8000, mono.
"""

from __future__ import annotations

import asyncio
import shutil
import wave
from collections.abc import Sequence
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from phonebridge.audio.ogg import OggPageReader, parse_opus_head
from phonebridge.models.base import SAMPLE_RATE
from phonebridge.models.factory import PolarGridSettings, make_factory
from phonebridge.simulators.personaplex.testing import GUARD, REQUEST, tone


async def run(*command: str, check: bool = False) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert not check or process.returncode == 0, output
    return output.decode()


DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"


class CapturingPolarGrid:
    """TEST DOUBLE: hand-shakes at once and keeps every binary message the client sends."""

    def __init__(self, expected: int) -> None:
        self.received: list[bytes] = []
        self.expected = expected
        self.got_all = asyncio.Event()

    async def handle(self, ws: ServerConnection) -> None:
        await ws.send(b"\x00")
        async for message in ws:
            if isinstance(message, bytes):
                self.received.append(message)
                if len(self.received) >= self.expected:
                    self.got_all.set()

    @staticmethod
    def select(ws: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        return next((s for s in offered if s.startswith("bearer.")), None)


async def polargrid_stream(frames: int) -> bytes:
    """The Ogg bytes a PolarGrid session sends for ``frames`` 20 ms frames of an 8 kHz call."""
    capture = CapturingPolarGrid(expected=frames // 4)  # a page per 80 ms model step
    async with serve(
        capture.handle, "127.0.0.1", 0, select_subprotocol=capture.select, ping_interval=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        settings = PolarGridSettings(api_key="pg_test", base_url=f"ws://127.0.0.1:{port}")
        session = make_factory("polargrid", settings).create(REQUEST)
        async with asyncio.timeout(GUARD):
            await session.open()
            for n in range(frames):
                await session.send_audio(tone(n))
            await capture.got_all.wait()
            await session.close()
    assert all(message[0] == 0x01 for message in capture.received)  # audio frames only
    return b"".join(message[1:] for message in capture.received)


async def test_an_8_khz_session_tells_polargrid_its_opus_was_encoded_from_8000() -> None:
    assert SAMPLE_RATE == 8000  # the session speaks the phone line's rate
    stream = await polargrid_stream(frames=4)
    pages = OggPageReader().push(stream)
    assert pages[0].bos  # the stream's first bytes
    head = parse_opus_head(pages[0].body)
    assert (head.input_sample_rate, head.channels) == (8000, 1)
    # The document says the same; if this fails, the fact changed: update the doc.
    assert f"OpusHead input rate {head.input_sample_rate}" in DOC.read_text()


@pytest.mark.interop
async def test_that_stream_is_legal_ogg_opus_and_decodes_at_24_khz(tmp_path: Path) -> None:
    """Independent tools accept it and decode it at PolarGrid's 24 kHz (RFC 7845 §5.1:
    the input rate is informational; a decoder may output any rate)."""
    opusinfo, opusdec = shutil.which("opusinfo"), shutil.which("opusdec")
    if opusinfo is None or opusdec is None:
        pytest.skip("opus-tools is not installed (Debian/Ubuntu: apt-get install opus-tools)")
    path, out = tmp_path / "to-polargrid.opus", tmp_path / "decoded.wav"
    path.write_bytes(await polargrid_stream(frames=50))  # one second of the call
    report = await run(opusinfo, str(path))
    assert "ERROR" not in report
    # The one warning: a live stream ends with its socket, not with an EOS page.
    warnings = [line for line in report.splitlines() if "WARNING" in line]
    assert warnings == ["WARNING: EOS not set on stream 1 (normal for live streams)"], report
    assert "Original sample rate: 8000 Hz" in report
    await run(opusdec, "--quiet", "--rate", "24000", str(path), str(out), check=True)
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == 24000
        assert wav.getnchannels() == 1
        assert wav.getnframes() > 20000  # about a second at 24 kHz (minus the pre-skip)
