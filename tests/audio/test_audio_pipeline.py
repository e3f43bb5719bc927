"""The whole audio path: mu-law -> 8 kHz PCM -> Opus in Ogg -> the model's 24 kHz, and back.

The bridge's codec runs at the line's 8 kHz both ways (audio/opus_stream.py);
the model decodes at 24 kHz and encodes full band at 24 kHz (PROTOCOLS.md
§2.4). These tests check each leg as the real parties run it.

Quality floors (measured values in brackets, complexity 5, 32 kb/s, narrowband):
- 1013 Hz tone through the bridge's own encode and decode: level within 1 dB
  [0.0], SINAD >= 28 dB;
- speech (espeak-ng, fixtures/speech_8k.ulaw) as the model hears it (decoded at
  24 kHz, compared at 8 kHz through the polyphase filter): spectral SNR over
  300-3400 Hz >= 18 dB;
- the model's full-band speech decoded straight to 8 kHz: a 1 kHz tone keeps
  its level, and a 4.5 kHz tone (which would alias to 3.5 kHz) is >= 30 dB down
  [37.3; 55 with the FIR], 6 kHz >= 45 dB down [56.8].

``fixtures/speech_8k.ulaw`` was made with
``espeak-ng -v en-us -s 150 -w s.wav "The quick brown fox jumps over the lazy
dog. Please hold while I connect your call."``, ``sox s.wav -r 8000 -e signed
-b 16 -t raw -`` and :func:`pcm16_to_ulaw`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phonebridge.audio.analysis import best_lag, db, rms, samples, sinad_db, spectral_snr_db, tone
from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.opus import OpusEncoder
from phonebridge.audio.opus_stream import OggOpusDecodeStream, OggOpusEncodeStream
from phonebridge.audio.resample import Downsampler24kTo8k
from phonebridge.simulators.personaplex.server_ogg import ServerOggWriter

SPEECH = (Path(__file__).parent / "fixtures" / "speech_8k.ulaw").read_bytes()


def caller_to_wire(mulaw: bytes) -> bytes:
    """What the bridge sends the model: 20 ms Twilio frames in, Ogg pages out."""
    encoder = OggOpusEncodeStream(sample_rate=8000)
    wire = bytearray(encoder.headers())
    for i in range(0, len(mulaw), 160):
        pcm8 = ulaw_to_pcm16(mulaw[i : i + 160])
        assert len(pcm8) == 2 * len(mulaw[i : i + 160])
        wire += encoder.push(pcm8)
    return bytes(wire)


def wire_to_caller(wire: bytes, chunk: int = 37) -> bytes:
    """What the caller hears: Ogg bytes split anyhow on the wire, mu-law out."""
    decoder = OggOpusDecodeStream(sample_rate=8000)
    out = bytearray()
    for i in range(0, len(wire), chunk):
        out += pcm16_to_ulaw(decoder.push(wire[i : i + chunk]))
    return bytes(out)


def as_the_model_hears_it(wire: bytes) -> np.ndarray:
    """The server decodes at 24 kHz; compare at 8 kHz through the polyphase filter."""
    return samples(Downsampler24kTo8k().push(OggOpusDecodeStream(sample_rate=24000).push(wire)))


def model_reply(pcm24: bytes) -> bytes:
    """Pages as the server sends them: full band, 80 ms packets (sphn 0.1 shape)."""
    writer = ServerOggWriter()
    steps = [pcm24[i : i + 3840] for i in range(0, len(pcm24) - 3839, 3840)]
    return writer.headers() + b"".join(writer.step(step) for step in steps)


def pcm_of(mulaw: bytes) -> np.ndarray:
    return samples(ulaw_to_pcm16(mulaw))


def test_tone_survives_the_bridge_codec_both_ways() -> None:
    mulaw = pcm16_to_ulaw(tone(1013, 1.0, 8000, amplitude=10000))
    reference = pcm_of(mulaw)[800:-800]
    out = pcm_of(wire_to_caller(caller_to_wire(mulaw)))[800:-800]
    # SILK drifts a tone's phase, so judge it without alignment: level and SINAD.
    assert abs(db(rms(out) / rms(reference))) <= 1.0
    assert sinad_db(reference, 8000, 1013) > 37  # mu-law's own floor
    assert sinad_db(out, 8000, 1013) >= 28


def test_the_model_hears_the_caller_clearly_at_24k() -> None:
    reference, heard = pcm_of(SPEECH), as_the_model_hears_it(caller_to_wire(SPEECH))
    lag = best_lag(reference, heard, 300)
    assert 0 <= lag <= 125  # the encoder's lookahead plus the comparison filter
    assert spectral_snr_db(reference, heard[lag:], 8000) >= 18


def test_the_model_would_notice_a_broken_path() -> None:
    # Drop every fifth 20 ms frame: the speech figure must fall below its floor.
    damaged = bytearray(SPEECH)
    for i in range(0, len(damaged), 800):
        damaged[i : i + 160] = b"\xff" * len(damaged[i : i + 160])
    heard = as_the_model_hears_it(caller_to_wire(bytes(damaged)))
    reference = pcm_of(SPEECH)
    lag = best_lag(reference, heard, 300)
    assert spectral_snr_db(reference, heard[lag:], 8000) < 18


@pytest.mark.parametrize(("freq", "floor_db"), [(1000, -1.0), (3000, -1.0)])
def test_the_model_speech_band_reaches_the_line_at_full_level(freq: int, floor_db: float) -> None:
    out = pcm_of(wire_to_caller(model_reply(tone(freq, 1.0, 24000, amplitude=10000))))[2000:-800]
    assert db(rms(out) / (10000 / np.sqrt(2))) >= floor_db


@pytest.mark.parametrize(("freq", "ceiling_db"), [(4500, -30.0), (6000, -45.0), (9000, -45.0)])
def test_the_model_high_band_does_not_alias_onto_the_line(freq: int, ceiling_db: float) -> None:
    """Decoding straight to 8 kHz must still remove what the line cannot carry."""
    out = pcm_of(wire_to_caller(model_reply(tone(freq, 1.0, 24000, amplitude=10000))))[2000:-800]
    assert db(rms(out) / (10000 / np.sqrt(2))) <= ceiling_db


def test_decoding_straight_to_8k_adds_no_delay() -> None:
    """The outbound leg's algorithmic delay (BENCHMARKS.md latency budget): zero.

    Decoding at 24 kHz and filtering down lags by the filter's 29 samples;
    decoding at 8 kHz must line up 29 samples earlier than that, no later.
    """
    rng = np.random.default_rng(7)
    noise = np.clip(rng.normal(0, 4000, 24000), -32768, 32767).astype("<i2").tobytes()
    wire = model_reply(noise)
    direct = samples(OggOpusDecodeStream(sample_rate=8000).push(wire))
    filtered = samples(Downsampler24kTo8k().push(OggOpusDecodeStream(sample_rate=24000).push(wire)))
    assert best_lag(direct[: 6000 - 100], filtered[: 6000 - 100], 100) == 29


def test_the_encoder_lookahead_is_the_inbound_delay() -> None:
    """The inbound leg's algorithmic delay: Opus's lookahead, 6.5 ms at 8 kHz."""
    assert OpusEncoder(8000).lookahead_48k / 48 == 6.5
