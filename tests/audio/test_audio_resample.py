"""Streaming 8k <-> 24k resamplers: lengths, chunking, passband, rejection, delay."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonebridge.audio.analysis import best_lag, db, rms, samples, tone
from phonebridge.audio.resample import Downsampler24kTo8k, Upsampler8kTo24k, design_prototype
from phonebridge.errors import AudioError

SETTLE = 400  # samples skipped at each end so the filter's transients do not count


def upsample(pcm8: bytes) -> bytes:
    up = Upsampler8kTo24k()
    return up.push(pcm8) + up.flush()


def downsample(pcm24: bytes) -> bytes:
    down = Downsampler24kTo8k()
    return down.push(pcm24) + down.flush()


def test_claimed_delays_fit_the_budget() -> None:
    assert Upsampler8kTo24k.delay_samples_24k <= 96  # 4 ms at 24 kHz
    assert Downsampler24kTo8k.delay_samples_8k <= 32  # 4 ms at 8 kHz


# -- lengths ------------------------------------------------------------------


@given(st.lists(st.integers(0, 400), max_size=8))
def test_upsampler_returns_exactly_three_times_the_samples(sizes: list[int]) -> None:
    up = Upsampler8kTo24k()
    for size in sizes:
        assert len(up.push(bytes(2 * size))) == 2 * 3 * size
    assert len(up.flush()) == 2 * up.delay_samples_24k


@given(st.lists(st.integers(0, 1000), max_size=8))
def test_downsampler_returns_a_third_and_holds_the_remainder(sizes: list[int]) -> None:
    down = Downsampler24kTo8k()
    total_in = total_out = 0
    for size in sizes:
        total_in += size
        total_out += len(down.push(bytes(2 * size))) // 2
        assert total_out == total_in // 3
    tail = len(down.flush()) // 2
    assert total_out + tail == -(-total_in // 3) + down.delay_samples_8k


def test_twenty_ms_frames_map_one_to_one() -> None:
    up, down = Upsampler8kTo24k(), Downsampler24kTo8k()
    for _ in range(5):
        assert len(up.push(bytes(320))) == 960
        assert len(down.push(bytes(960))) == 320


# -- chunking invariance ------------------------------------------------------

pcm_and_cuts = st.tuples(
    st.lists(st.integers(-32768, 32767), max_size=700),
    st.lists(st.integers(0, 700), max_size=10),
)


def cut(values: list[int], cuts: list[int]) -> list[bytes]:
    pcm = np.array(values, dtype="<i2").tobytes()
    points = sorted({2 * min(c, len(values)) for c in cuts} | {0, len(pcm)})
    return [pcm[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=60)
@given(pcm_and_cuts)
def test_upsampler_chunked_equals_whole(case: tuple[list[int], list[int]]) -> None:
    values, cuts = case
    chunks = cut(values, cuts)
    up = Upsampler8kTo24k()
    chunked = b"".join(up.push(chunk) for chunk in chunks) + up.flush()
    assert chunked == upsample(b"".join(chunks))


@settings(max_examples=60)
@given(pcm_and_cuts)
def test_downsampler_chunked_equals_whole(case: tuple[list[int], list[int]]) -> None:
    values, cuts = case
    chunks = cut(values, cuts)
    down = Downsampler24kTo8k()
    chunked = b"".join(down.push(chunk) for chunk in chunks) + down.flush()
    assert chunked == downsample(b"".join(chunks))


def test_flush_resets_to_a_fresh_state() -> None:
    signal = tone(1000, 0.1, 8000)
    up = Upsampler8kTo24k()
    first = up.push(signal) + up.flush()
    assert up.push(signal) + up.flush() == first
    down = Downsampler24kTo8k()
    signal24 = tone(1000, 0.1, 24000)[:-2]  # leave a remainder behind
    first = down.push(signal24) + down.flush()
    assert down.push(signal24) + down.flush() == first


# -- quality --------------------------------------------------------------------

PASSBAND_HZ = [300, 500, 1000, 2000, 3000, 3400]


@pytest.mark.parametrize("freq", PASSBAND_HZ)
def test_upsampler_passband_is_flat(freq: float) -> None:
    pcm8 = tone(freq, 0.5, 8000)
    out = samples(upsample(pcm8))[3 * SETTLE : -3 * SETTLE]
    assert abs(db(rms(out) / rms(samples(pcm8)[SETTLE:-SETTLE]))) <= 0.5


@pytest.mark.parametrize("freq", PASSBAND_HZ)
def test_downsampler_passband_is_flat(freq: float) -> None:
    pcm24 = tone(freq, 0.5, 24000)
    out = samples(downsample(pcm24))[SETTLE:-SETTLE]
    assert abs(db(rms(out) / rms(samples(pcm24)))) <= 0.5


@pytest.mark.parametrize("freq", [4200, 5000, 6000, 9000, 11000])
def test_downsampler_rejects_what_would_alias(freq: float) -> None:
    pcm24 = tone(freq, 0.5, 24000, amplitude=32000)
    out = samples(downsample(pcm24))[SETTLE:-SETTLE]
    # All the output is alias (plus rounding noise): it must be >= 80 dB down.
    # (A perfect result is all zeros, so compare linearly: no log of zero.)
    assert rms(out) <= rms(samples(pcm24)) * 10 ** (-80 / 20)


def energy_above(signal: np.ndarray, rate: int, cutoff_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)))) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    return float(spectrum[freqs >= cutoff_hz].sum() / spectrum.sum())


@pytest.mark.parametrize("freq", [300, 1000, 2500, 3400, 3800])
def test_upsampler_images_above_4k2_are_rejected(freq: float) -> None:
    out = samples(upsample(tone(freq, 0.5, 8000)))[3 * SETTLE : -3 * SETTLE]
    # Images of an f Hz tone land at 8k +/- f, 16k +/- f: >= 4.2 kHz for f <= 3.8 kHz.
    assert 10 * np.log10(energy_above(out, 24000, 4200)) <= -80


def test_prototype_response_over_every_frequency() -> None:
    # Finer than any tone test: the float response on a 1.5 Hz grid.
    response = np.abs(np.fft.rfft(design_prototype(), 1 << 14))
    freqs = np.fft.rfftfreq(1 << 14, 1 / 24000)
    passband = 20 * np.log10(response[freqs <= 3400])
    assert passband.min() >= -0.5
    assert passband.max() <= 0.5
    assert 20 * np.log10(response[freqs >= 4200].max()) <= -80


def test_measurement_would_catch_an_unfiltered_resampler() -> None:
    # The same measurement on zero-stuffing (no filter) must fail the bound.
    stuffed = np.zeros(3 * 4000)
    stuffed[::3] = samples(tone(1000, 0.5, 8000))
    assert 10 * np.log10(energy_above(stuffed, 24000, 4200)) > -80


def test_upsampler_delay_is_what_it_claims() -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(-8000, 8000, 4000).astype("<i2")
    out = samples(upsample(noise.tobytes()))
    stuffed = np.zeros(3 * noise.size)
    stuffed[::3] = noise
    assert best_lag(stuffed, out, 200) == Upsampler8kTo24k.delay_samples_24k


def test_downsampler_delay_is_what_it_claims() -> None:
    rng = np.random.default_rng(2)
    noise = rng.integers(-8000, 8000, 12000).astype("<i2")
    out = samples(downsample(noise.tobytes()))
    assert best_lag(noise[::3].astype(float), out, 60) == Downsampler24kTo8k.delay_samples_8k


# -- edges ----------------------------------------------------------------------


def reference_up(x: np.ndarray) -> np.ndarray:
    """Direct full-rate float convolution: zero-stuff, filter, saturate."""
    stuffed = np.zeros(3 * x.size)
    stuffed[::3] = 3 * x
    return np.clip(np.rint(np.convolve(stuffed, design_prototype())[: stuffed.size]), -32768, 32767)


def reference_down(x: np.ndarray) -> np.ndarray:
    """Direct full-rate float convolution, then every third sample (whole triples only)."""
    x = x[: x.size - x.size % 3]
    if not x.size:
        return x
    filtered = np.convolve(x, design_prototype())[: x.size]
    return np.clip(np.rint(filtered[::3]), -32768, 32767)


@settings(max_examples=30)
@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=900))
def test_polyphase_matches_a_direct_convolution(values: list[int]) -> None:
    x = np.array(values, dtype="<i2")
    up = samples(Upsampler8kTo24k().push(x.tobytes()))
    assert np.abs(up - reference_up(x.astype(float))).max() <= 2  # taps rounded to 2**-20
    down = samples(Downsampler24kTo8k().push(x.tobytes()))
    reference = reference_down(x.astype(float))
    assert down.size == reference.size
    assert np.all(np.abs(down - reference) <= 2)


def test_full_scale_square_wave_saturates_instead_of_wrapping() -> None:
    square = np.tile(np.repeat(np.array([32767, -32768], dtype="<i2"), 40), 20)
    up = samples(upsample(square.tobytes()))[: 3 * square.size]
    down = samples(downsample(square.tobytes()))[: square.size // 3]
    for out, reference in (
        (up, reference_up(square.astype(float))),
        (down, reference_down(square.astype(float))),
    ):
        assert out.max() == 32767  # the filter's overshoot is clipped ...
        assert out.min() == -32768
        # ... not wrapped around (a wrap is off by 65536).
        assert np.abs(out - reference).max() <= 2


def test_constant_full_scale_stays_positive() -> None:
    high = np.full(2000, 32767, dtype="<i2").tobytes()
    assert samples(upsample(high))[200:-200].min() > 32000
    assert samples(downsample(high))[100:-100].min() > 32000


@pytest.mark.parametrize("resampler", [Upsampler8kTo24k, Downsampler24kTo8k])
def test_odd_byte_count_is_refused(resampler: type[Upsampler8kTo24k | Downsampler24kTo8k]) -> None:
    with pytest.raises(AudioError):
        resampler().push(b"\x00\x00\x00")
