"""Opus encoder and decoder on libopus (RFC 6716), 24 kHz mono, 20 ms frames.

We call libopus through the ctypes functions ``opuslib.api`` already binds,
not through ``opuslib.Encoder``/``Decoder``: the wrapper allocates a fresh
output buffer and copies through Python ``array`` on every call, which costs
more than the decode itself (AUDIO.md: ~50 µs instead of ~30 µs per 20 ms).
Here the output buffers are allocated once per codec and reused.

Packet durations are read from the TOC byte (RFC 6716 §3.1) in pure Python so
callers can size things without a decoder.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any, Final

import opuslib
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder
import opuslib.api.info

from phonebridge.errors import OpusError

# Complexity 1. Session 1 chose 5 for 24 kHz full-band encoding (AUDIO.md:
# PESQ-NB 4.17 at 5 against 4.31 at 10, ~160 µs). The bridge now encodes the
# line's 8 kHz narrowband (see DEFAULT_MAX_BANDWIDTH and audio/opus_stream.py),
# where complexity buys almost nothing: PESQ-NB over four speech files, decoded
# at 24 kHz as the model does, is 4.48 at 1, 4.49 at 3 and 4.50 at 5, against
# ~28, ~51 and ~58-80 µs per 20 ms. The encoder was the largest single item in
# the load profile, so the cheapest setting within 0.025 of the best wins.
# (Reproduce: the PESQ column of bench/bench_audio.py's complexity table.)
DEFAULT_COMPLEXITY: Final[int] = 1

# Complexity 5 on wideband legs (16/24 kHz): there complexity buys what the leg
# is for. On a 16 kHz leg PESQ-WB (caller -> model) is 3.52 at 1 and 4.24 at 5,
# for ~56 -> ~118 µs per 20 ms of encoding (bench/bench_carrier_pesq.py's
# complexity table); narrowband legs keep the cheap setting above.
WIDEBAND_COMPLEXITY: Final[int] = 5


def complexity_for(sample_rate: int) -> int:
    """The encoder complexity for a leg at ``sample_rate`` (see the two constants above)."""
    return DEFAULT_COMPLEXITY if sample_rate <= 8000 else WIDEBAND_COMPLEXITY


# The bridge only ever encodes a phone line: 8 kHz audio upsampled to 24 kHz,
# with nothing above 4 kHz. Capping Opus at narrowband stops libopus from
# spending bits and CPU on empty high bands: encode drops from ~165 to ~88 µs
# per 20 ms at complexity 5 and PESQ-NB rises from 4.25 to 4.50 on the speech
# fixture (bench/bench_audio.py measures both). ``None`` leaves libopus's
# automatic choice (full band at 24 kHz).
NARROWBAND: Final[int] = 1101  # OPUS_BANDWIDTH_NARROWBAND (opus_defines.h)
DEFAULT_MAX_BANDWIDTH: Final[int | None] = NARROWBAND

# 32 kb/s instead of libopus's automatic ~27 kb/s: AUDIO.md measures PESQ 4.08 ->
# 4.17 for it at complexity 5, for free in CPU; the model link is not bandwidth-bound.
DEFAULT_BITRATE: Final[int | None] = 32_000

CHANNELS: Final[int] = 1
FRAME_MS: Final[int] = 20
# The longest legal Opus packet is 120 ms (RFC 6716 §3.2.5).
MAX_PACKET_MS: Final[int] = 120
# Enough for any single frame at any bitrate libopus produces (its own recommendation).
MAX_PACKET_BYTES: Final[int] = 4000
_SUPPORTED_RATES: Final[frozenset[int]] = frozenset({8000, 12000, 16000, 24000, 48000})

_encode: Any = opuslib.api.encoder.libopus_encode
_decode: Any = opuslib.api.decoder.libopus_decode
_int16_pointer: Any = opuslib.api.c_int16_pointer
# ctypes.cast accepts bytes at run time (as a char*), typeshed does not say so.
_cast: Any = ctypes.cast


def _check_rate(sample_rate: int) -> None:
    if sample_rate not in _SUPPORTED_RATES:
        raise OpusError(f"Opus does not support a sample rate of {sample_rate} Hz")


def _strerror(code: int) -> str:
    return str(opuslib.api.info.strerror(code).decode())


class OpusEncoder:
    """One libopus encoder: mono, ``APPLICATION_VOIP``, exactly 20 ms per packet."""

    def __init__(
        self,
        sample_rate: int = 24000,
        *,
        complexity: int = DEFAULT_COMPLEXITY,
        bitrate: int | None = DEFAULT_BITRATE,
        max_bandwidth: int | None = DEFAULT_MAX_BANDWIDTH,
    ) -> None:
        _check_rate(sample_rate)
        if not 0 <= complexity <= 10:
            raise OpusError(f"Opus complexity must be 0..10, not {complexity}")
        self.sample_rate = sample_rate
        self.complexity = complexity
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self.frame_bytes = self.frame_samples * 2
        try:
            state = opuslib.api.encoder.create_state(
                sample_rate, CHANNELS, opuslib.APPLICATION_VOIP
            )
            ctl = opuslib.api.encoder.encoder_ctl
            ctl(state, opuslib.api.ctl.set_complexity, complexity)
            if bitrate is not None:
                ctl(state, opuslib.api.ctl.set_bitrate, bitrate)
            if max_bandwidth is not None:
                ctl(state, opuslib.api.ctl.set_max_bandwidth, max_bandwidth)
            # We only ever carry speech: skip libopus's music/speech detector.
            ctl(state, opuslib.api.ctl.set_signal, opuslib.SIGNAL_VOICE)
            lookahead = int(ctl(state, opuslib.api.ctl.get_lookahead))
        except opuslib.OpusError as exc:
            raise OpusError(f"cannot create Opus encoder: {exc}") from exc
        self._state = state
        weakref.finalize(self, opuslib.api.encoder.destroy, state)
        # Pre-skip for OpusHead counts 48 kHz samples whatever the input rate
        # (RFC 7845 §4.2): libopus at 24 kHz reports 156 -> 312.
        self.lookahead_48k: int = lookahead * (48000 // sample_rate)
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)

    def encode(self, pcm: bytes) -> bytes:
        """Encode exactly one 20 ms frame of s16le PCM into one Opus packet."""
        if len(pcm) != self.frame_bytes:
            raise OpusError(
                f"encode() takes one 20 ms frame ({self.frame_bytes} bytes), got {len(pcm)}"
            )
        size = _encode(
            self._state,
            _cast(pcm, _int16_pointer),
            self.frame_samples,
            self._out,
            MAX_PACKET_BYTES,
        )
        if size < 0:  # pragma: no cover - libopus only fails here on a corrupt state
            raise OpusError(f"opus_encode failed: {_strerror(size)}")
        return self._out.raw[:size]


class OpusDecoder:
    """One libopus decoder (mono): any legal packet, 2.5 to 120 ms, to s16le PCM."""

    def __init__(self, sample_rate: int = 24000) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        self._max_samples = sample_rate * MAX_PACKET_MS // 1000
        state = opuslib.api.decoder.create_state(sample_rate, CHANNELS)
        self._state = state
        weakref.finalize(self, opuslib.api.decoder.destroy, state)
        self._out = (ctypes.c_int16 * self._max_samples)()

    def decode(self, packet: bytes) -> bytes:
        """Decode one Opus packet; raises :class:`OpusError` if it is not valid Opus."""
        if not packet:
            # libopus would treat an empty packet as a lost one and conceal it;
            # on a reliable stream an empty packet is a bug on the peer's side.
            raise OpusError("empty Opus packet")
        samples = _decode(self._state, packet, len(packet), self._out, self._max_samples, 0)
        if samples < 0:
            raise OpusError(f"opus_decode failed: {_strerror(samples)}")
        return ctypes.string_at(self._out, samples * 2)


# Frame size per TOC config (RFC 6716 §3.1, table 2), in 48 kHz samples:
# 0-11 SILK 10/20/40/60 ms, 12-15 hybrid 10/20 ms, 16-31 CELT 2.5/5/10/20 ms.
_FRAME_SAMPLES_48K: Final[tuple[int, ...]] = (
    (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4
)
_MAX_PACKET_SAMPLES_48K: Final[int] = 48 * MAX_PACKET_MS


def packet_samples_48k(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, from its TOC (RFC 6716 §3.1).

    Raises :class:`OpusError` on an empty packet, a code-3 packet without its
    frame-count byte or with zero frames, or a duration over 120 ms.
    """
    if not packet:
        raise OpusError("empty Opus packet")
    toc = packet[0]
    frame = _FRAME_SAMPLES_48K[toc >> 3]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            raise OpusError("code-3 Opus packet without its frame-count byte")
        frames = packet[1] & 0x3F
        if frames == 0:
            raise OpusError("code-3 Opus packet with zero frames")
    total = frames * frame
    if total > _MAX_PACKET_SAMPLES_48K:
        raise OpusError(f"Opus packet of {total} samples at 48 kHz is longer than 120 ms")
    return total
