#!/usr/bin/env bash
# Regenerates include/headcount.h from ffi/src with ffi/cbindgen.toml.
# Usage: scripts/gen-header.sh [OUTPUT]   (default: include/headcount.h)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/include/headcount.h}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cbindgen="${CBINDGEN:-$(command -v cbindgen || echo "$HOME/.cargo/bin/cbindgen")}"
if [ ! -x "$cbindgen" ]; then
    echo "cbindgen not found: cargo install cbindgen --locked (or set CBINDGEN)" >&2
    exit 2
fi
# The checked-in header was generated with this cbindgen; another version may
# format it differently, which check-header.sh would report as stale.
pinned="0.29.4"
have="$("$cbindgen" --version | awk '{print $2}')"
if [ "$have" != "$pinned" ]; then
    echo "warning: cbindgen $have, but include/headcount.h is generated with $pinned" \
        "(cargo install cbindgen --locked --version $pinned)" >&2
fi
cd "$root/ffi"
# cbindgen warns that it "can't find RawStatus": that type is excluded on
# purpose (see ffi/cbindgen.toml), so that one warning is filtered out.
"$cbindgen" --quiet --config cbindgen.toml --crate headcount-ffi --output "$out" 2> >(grep -v "Can't find RawStatus" >&2)
