"""Interop with independent tools (Debian opus-tools, ffmpeg): our streams and theirs."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from phonebridge.audio.analysis import tone
from phonebridge.audio.ogg import OggOpusReader, OggPageReader
from phonebridge.audio.opus import packet_samples_48k
from phonebridge.audio.opus_stream import OggOpusDecodeStream, OggOpusEncodeStream

pytestmark = pytest.mark.interop


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian/Ubuntu: apt-get install opus-tools ffmpeg)")
    return path


def our_stream(seconds: float) -> bytes:
    stream = OggOpusEncodeStream(serial=0xC0FFEE)
    pcm = tone(440, seconds, 24000)
    return stream.headers() + stream.push(pcm) + stream.close()


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


def test_opusinfo_accepts_our_stream(tmp_path: Path) -> None:
    opusinfo = need("opusinfo")
    path = tmp_path / "ours.opus"
    path.write_bytes(our_stream(1.0))
    result = subprocess.run([opusinfo, str(path)], capture_output=True, text=True, check=False)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "WARNING" not in report
    assert "ERROR" not in report
    assert "Pre-skip: 312" in report
    assert "Packet duration:   20.0ms (max),   20.0ms (avg),   20.0ms (min)" in report


def test_opusdec_decodes_our_stream(tmp_path: Path) -> None:
    opusdec = need("opusdec")
    path, out = tmp_path / "ours.opus", tmp_path / "ours.wav"
    path.write_bytes(our_stream(1.0))
    subprocess.run(
        [opusdec, "--quiet", "--rate", "24000", str(path), str(out)],
        check=True,
        capture_output=True,
    )
    with wave.open(str(out)) as wav:
        # 50 packets of 960 (48 kHz) minus the 312 pre-skip, at 24 kHz.
        assert wav.getnframes() == (50 * 960 - 312) // 2


@pytest.mark.parametrize("rate", [24000, 48000])
def test_we_read_opusenc_output_with_the_right_sample_count(tmp_path: Path, rate: int) -> None:
    opusenc = need("opusenc")
    source, encoded = tmp_path / "in.wav", tmp_path / "in.opus"
    input_samples = int(rate * 1.234)
    write_wav(source, tone(300, input_samples / rate, rate), rate)
    subprocess.run(
        [opusenc, "--quiet", "--bitrate", "32", str(source), str(encoded)],
        check=True,
        capture_output=True,
    )
    data = encoded.read_bytes()
    pages = OggPageReader().push(data)
    reader = OggOpusReader()
    packets = reader.push(data)
    assert reader.head is not None
    assert reader.head.input_sample_rate == rate
    total_48k = sum(packet_samples_48k(p) for p in packets)
    # RFC 7845 §4: the last granule counts pre-skip plus the real samples (end trimmed).
    assert pages[-1].granule_position - reader.head.pre_skip == input_samples * 48000 // rate
    assert total_48k >= pages[-1].granule_position
    decoded = OggOpusDecodeStream(trim_pre_skip=True).push(data)
    assert len(decoded) // 2 == (total_48k - reader.head.pre_skip) // 2


def test_we_read_ffmpeg_output_with_several_packets_per_page(tmp_path: Path) -> None:
    ffmpeg = need("ffmpeg")
    source, encoded = tmp_path / "in.wav", tmp_path / "ff.opus"
    write_wav(source, tone(500, 2.0, 24000), 24000)
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(source), "-c:a", "libopus", "-b:a", "24k", str(encoded)],
        check=True,
        capture_output=True,
    )
    data = encoded.read_bytes()
    pages = OggPageReader().push(data)
    reader = OggOpusReader()
    packets = reader.push(data)
    assert any(len([s for s in p.segments if s < 255]) > 1 for p in pages)  # packed pages
    assert reader.head is not None
    total_48k = sum(packet_samples_48k(p) for p in packets)
    assert pages[-1].granule_position - reader.head.pre_skip == 2 * 48000
    assert total_48k >= pages[-1].granule_position
    # Fed one byte-run at a time, the decoder gives the same PCM.
    decoder, whole = OggOpusDecodeStream(), OggOpusDecodeStream().push(data)
    assert b"".join(decoder.push(data[i : i + 1000]) for i in range(0, len(data), 1000)) == whole
    assert len(whole) // 2 == total_48k // 2
