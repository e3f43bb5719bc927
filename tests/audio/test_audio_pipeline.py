"""The whole audio path, end to end: mu-law -> 24k -> Opus -> Ogg -> back -> mu-law.

Quality floors (measured values in brackets, complexity 5, 32 kb/s):
- 1013 Hz tone: level within 1 dB [-0.03], SINAD >= 28 dB [33.9; mu-law alone 37.7]
- speech (espeak-ng, fixtures/speech_8k.ulaw), magnitude-spectrum SNR over
  300-3400 Hz after alignment: >= 18 dB [23.5]; without Opus >= 35 dB [42.2]

``fixtures/speech_8k.ulaw`` was made with
``espeak-ng -v en-us -s 150 -w s.wav "The quick brown fox jumps over the lazy
dog. Please hold while I connect your call."``, ``sox s.wav -r 8000 -e signed
-b 16 -t raw -`` and :func:`pcm16_to_ulaw`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phonebridge.audio.analysis import (
    aligned_snr_db,
    best_lag,
    db,
    rms,
    samples,
    sinad_db,
    spectral_snr_db,
    tone,
)
from phonebridge.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from phonebridge.audio.opus_stream import OggOpusDecodeStream, OggOpusEncodeStream
from phonebridge.audio.pipeline import ModelToPhone, PhoneToModel

SPEECH = (Path(__file__).parent / "fixtures" / "speech_8k.ulaw").read_bytes()


def round_trip(mulaw: bytes, *, opus: bool = True, wire_chunk: int = 37) -> bytes:
    """Call-shaped: 20 ms Twilio frames in, Ogg bytes split arbitrarily on the wire."""
    phone_in, phone_out = PhoneToModel(), ModelToPhone()
    encoder, decoder = OggOpusEncodeStream(), OggOpusDecodeStream()
    wire = bytearray(encoder.headers())
    out = bytearray()
    for i in range(0, len(mulaw), 160):
        pcm24 = phone_in.push(mulaw[i : i + 160])
        assert len(pcm24) == 6 * len(mulaw[i : i + 160])
        if opus:
            wire += encoder.push(pcm24)
            pcm24, cut = b"", len(wire) - len(wire) % wire_chunk
            for j in range(0, cut, wire_chunk):
                pcm24 += decoder.push(bytes(wire[j : j + wire_chunk]))
            del wire[:cut]
        out += phone_out.push(pcm24)
    return bytes(out)


def pcm_of(mulaw: bytes) -> np.ndarray:
    return samples(ulaw_to_pcm16(mulaw))


def test_tone_survives_the_whole_path() -> None:
    mulaw = pcm16_to_ulaw(tone(1013, 1.0, 8000, amplitude=10000))
    reference = pcm_of(mulaw)[800:-800]
    out = pcm_of(round_trip(mulaw))[800:-800]
    # SILK drifts a tone's phase, so judge it without alignment: level and SINAD.
    assert abs(db(rms(out) / rms(reference))) <= 1.0
    assert sinad_db(reference, 8000, 1013) > 37  # mu-law's own floor
    assert sinad_db(out, 8000, 1013) >= 28


def test_tone_without_opus_keeps_mu_law_quality() -> None:
    mulaw = pcm16_to_ulaw(tone(1013, 1.0, 8000, amplitude=10000))
    reference, out = pcm_of(mulaw), pcm_of(round_trip(mulaw, opus=False))
    assert aligned_snr_db(reference, out, range(2 * 29, 2 * 29 + 1), edge=800) >= 35


def test_speech_survives_the_whole_path() -> None:
    out = round_trip(SPEECH)
    reference, decoded = pcm_of(SPEECH), pcm_of(out)
    lag = best_lag(reference, decoded, 300)
    assert 95 <= lag <= 125
    assert spectral_snr_db(reference, decoded[lag:], 8000) >= 18


def test_phone_side_alone_is_nearly_transparent() -> None:
    out = round_trip(SPEECH, opus=False)
    reference, decoded = pcm_of(SPEECH), pcm_of(out)
    lag = best_lag(reference, decoded, 300)
    assert lag == 2 * 29  # the two resamplers' claimed delays, in 8 kHz samples
    assert spectral_snr_db(reference, decoded[lag:], 8000) >= 35


def test_measure_would_catch_a_broken_path() -> None:
    # Drop every fifth 20 ms frame: the speech figure must fall below its floor.
    damaged = bytearray(SPEECH)
    for i in range(0, len(damaged), 800):
        damaged[i : i + 160] = b"\xff" * len(damaged[i : i + 160])
    assert spectral_snr_db(pcm_of(SPEECH), pcm_of(bytes(damaged)), 8000) < 18


def test_flush_returns_the_filter_tails() -> None:
    phone_in, phone_out = PhoneToModel(), ModelToPhone()
    assert len(phone_in.push(b"\xff" * 160)) == 960
    assert len(phone_in.flush()) == 2 * phone_in.delay_samples_24k
    assert len(phone_out.push(bytes(960))) == 160
    assert len(phone_out.flush()) == phone_out.delay_samples_8k


def test_push_with_line_returns_the_line_audio_and_the_same_output() -> None:
    """The call path records the 8 kHz line audio; it must be what was transcoded."""
    mulaw = bytes(range(256))[:160]
    a, b = PhoneToModel(), PhoneToModel()
    pcm8, pcm24 = a.push_with_line(mulaw)
    assert pcm8 == ulaw_to_pcm16(mulaw)
    assert pcm24 == b.push(mulaw)
    c, d = ModelToPhone(), ModelToPhone()
    line, coded = c.push_with_line(pcm24)
    assert coded == pcm16_to_ulaw(line)
    assert coded == d.push(pcm24)
    assert len(line) == len(pcm24) // 3
