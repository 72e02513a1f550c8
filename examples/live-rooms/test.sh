#!/usr/bin/env bash
# The live-rooms browser test: three servers clustered on loopback, pages in
# headless Chromium (Debian's /usr/bin/chromium, driven over the DevTools
# protocol; nothing is downloaded). Needs the headcount package: by default
# the Python of bindings/python/.venv, which bindings/python/run-tests.sh
# creates and installs the package into (or set PYTHON). Bounded: the whole
# run is killed after 240 s. Extra arguments go to browser_test.py
# (e.g. --screenshot screenshot.png).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$root/bindings/python/.venv/bin/python}"
if ! "$python" -c 'import headcount' 2>/dev/null; then
    echo "test.sh: $python cannot import headcount (run bindings/python/run-tests.sh first, or set PYTHON)" >&2
    exit 1
fi
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    echo "test.sh: $chromium is missing (scripts/install-deps installs Debian's chromium)" >&2
    exit 1
fi
cd "$here"
exec timeout -k 10 240 "$python" browser_test.py --chromium "$chromium" "$@"
