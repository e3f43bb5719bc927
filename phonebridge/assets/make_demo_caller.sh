#!/usr/bin/env bash
# Regenerates demo_caller.wav: the caller side of `phonebridge demo`, spoken by
# espeak-ng and converted by sox to what a phone line carries (8 kHz mono s16).
# Debian: apt-get install -y espeak-ng sox
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 150 -w "$tmp/a.wav" "Hi, this is Sam calling. When is my recycling picked up this week?"
espeak-ng -v en-us -s 150 -w "$tmp/b.wav" "Great, thank you. Bye."
for part in a b; do sox "$tmp/$part.wav" -r 8000 -c 1 -b 16 "$tmp/${part}8.wav"; done
sox -n -r 8000 -c 1 -b 16 "$tmp/s1.wav" trim 0 1.0
sox -n -r 8000 -c 1 -b 16 "$tmp/s3.wav" trim 0 3.5
sox "$tmp/s1.wav" "$tmp/a8.wav" "$tmp/s3.wav" "$tmp/b8.wav" "$tmp/s1.wav" demo_caller.wav
