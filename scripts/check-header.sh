#!/usr/bin/env bash
# Fails when include/headcount.h is not what cbindgen generates from ffi/src.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$root/scripts/gen-header.sh" "$tmp/headcount.h"
if ! diff -u "$root/include/headcount.h" "$tmp/headcount.h"; then
    echo "include/headcount.h is stale: run scripts/gen-header.sh and commit the result" >&2
    exit 1
fi
echo "include/headcount.h is up to date"
