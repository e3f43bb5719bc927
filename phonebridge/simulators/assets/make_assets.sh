#!/bin/sh
# Regenerates the speech clips of the PersonaPlex simulator's "speech" reply mode
# (a TEST DOUBLE: these are canned espeak-ng phrases, not a model).
# Needs espeak-ng and sox. Output: 24 kHz mono signed 16-bit WAV, silence trimmed,
# kept small (< 300 KB together) because they are committed.
# The texts must match CLIPS in phonebridge/simulators/personaplex/replies.py.
set -eu
cd "$(dirname "$0")"
make_clip() {
    name=$1
    text=$2
    tmp=$(mktemp --suffix=.wav)
    espeak-ng -v en-us -s 175 -w "$tmp" "$text"
    # Trim leading/trailing silence, resample to 24 kHz mono s16, -3 dB headroom.
    sox "$tmp" -r 24000 -c 1 -b 16 -e signed-integer "$name.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse gain -n -3
    rm -f "$tmp"
}
make_clip greeting "Hello, thanks for calling. How can I help?"
make_clip reply1 "I see. Tell me more."
make_clip reply2 "Okay, got it."
ls -l ./*.wav
