#!/usr/bin/env bash
# Prepares a machine to run phonebridge from this checkout: system libraries
# (Debian/Ubuntu, when run as root or with sudo), then a virtual environment
# in .venv with the package installed editable.
#
#   deploy/bootstrap.sh          what `phonebridge demo` and `serve` need
#   deploy/bootstrap.sh --test   plus the test tools (opus-tools, Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1

packages=(libopus0)
# The tests start real Redis, PostgreSQL and Caddy servers on loopback;
# prometheus provides promtool, which checks the shipped alert rules.
[ "$want_tests" = 1 ] && packages+=(opus-tools ffmpeg chromium redis-server postgresql caddy prometheus)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "bootstrap: please install: ${missing[*]} (libopus is needed by opuslib)" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "bootstrap: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
extras="."
[ "$want_tests" = 1 ] && extras=".[dev]"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e "$extras"
