"""The audio path: pure, synchronous codecs (no asyncio, no sockets, no clock).

- :mod:`~phonebridge.audio.g711` — mu-law <-> s16le PCM
- :mod:`~phonebridge.audio.resample` — streaming 8 kHz <-> 24 kHz (fal's raw 24 kHz PCM)
- :mod:`~phonebridge.audio.opus` — libopus encoder/decoder, packet durations
- :mod:`~phonebridge.audio.ogg` — Ogg pages and Ogg Opus streams, written and read
- :mod:`~phonebridge.audio.opus_stream` — PCM <-> Ogg Opus bytes, as model clients use them
  (at the line's 8 kHz: libopus changes rate inside the codec)
- :mod:`~phonebridge.audio.frames` — fixed-size framing
- :mod:`~phonebridge.audio.analysis` — tones, alignment, SNR/SINAD (tests, bench)

PCM everywhere is ``bytes`` of signed 16-bit little-endian mono samples.
"""
