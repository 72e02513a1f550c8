#!/usr/bin/env bash
# Builds libheadcount (if needed), the NIF and the beams, and runs the EUnit
# suite of the Erlang binding. Exits non-zero on any failure.
#
#   bindings/erlang/run-tests.sh               # against target/debug/libheadcount.a
#   PROFILE=release bindings/erlang/run-tests.sh
#   HC_LIB=/path/to/libheadcount.a bindings/erlang/run-tests.sh   # skips cargo
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
profile="${PROFILE:-debug}"

for tool in erl erlc cc make; do
    command -v "$tool" >/dev/null || { echo "run-tests.sh: '$tool' not found (need Erlang/OTP with erlang-dev, a C compiler, make)" >&2; exit 1; }
done

if [ -z "${HC_LIB:-}" ]; then
    # Incremental: a no-op when the library is up to date.
    release_flag=""
    [ "$profile" = release ] && release_flag="--release"
    (cd "$root" && cargo build --locked -p headcount-ffi $release_flag)
fi

make -C "$here" PROFILE="$profile" all

cd "$here"
# +S 4: several schedulers even on a small machine, so the races between
# NIF calls, down callbacks and stop really run in parallel.
timeout 900 erl +S 4 -noshell -pa ebin \
    -eval 'case eunit:test(headcount_tests, [verbose]) of ok -> halt(0); _ -> halt(1) end'
