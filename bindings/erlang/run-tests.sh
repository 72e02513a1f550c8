#!/usr/bin/env bash
# Builds libheadcount (release, incremental), the NIF and the beams, and
# runs the EUnit suite of the Erlang binding. Exits non-zero on any failure.
#
#   bindings/erlang/run-tests.sh                      # against target/release/libheadcount.a
#   PROFILE=debug bindings/erlang/run-tests.sh        # against the debug library
#   HC_LIB=/path/to/libheadcount.a bindings/erlang/run-tests.sh   # skips cargo
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for tool in erl erlc cc make cargo; do
    command -v "$tool" >/dev/null || { echo "run-tests.sh: '$tool' not found (need Erlang/OTP with erlang-dev, a C compiler, make, cargo)" >&2; exit 1; }
done

# The suite runs with +S 4: several schedulers even on a small machine, so
# the races between NIF calls, down callbacks and stop really run in parallel.
timeout 900 make -C "$here" test

# A rebar3 project that depends on this directory through _checkouts builds
# it (the pre-compile hook builds the release library and the NIF) and can
# call it.
if command -v rebar3 >/dev/null; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/demo/src" "$tmp/demo/_checkouts"
    printf '{erl_opts, [debug_info]}.\n{deps, [headcount]}.\n' > "$tmp/demo/rebar.config"
    printf '{application, demo, [{vsn, "0.1.0"}, {applications, [kernel, stdlib, headcount]}]}.\n' \
        > "$tmp/demo/src/demo.app.src"
    ln -s "$here" "$tmp/demo/_checkouts/headcount"
    (cd "$tmp/demo" && rebar3 compile >/dev/null)
    ebin="$tmp/demo/_build/default/checkouts/headcount/ebin"
    [ ! -e "$ebin/headcount_tests.beam" ] || { echo "rebar3: the EUnit module is part of the build" >&2; exit 1; }
    out="$(cd "$tmp/demo" && erl -noshell -pa "$ebin" -eval \
        '{ok, N} = headcount:start([{node_name, <<"rebar3">>}]), ok = headcount:track(N, <<"t">>),
         io:format("count=~b~n", [headcount:count(N, <<"t">>)]), halt().')"
    [ "$out" = "count=1" ] || { echo "rebar3 project: expected count=1, got: $out" >&2; exit 1; }
    echo "rebar3 project with headcount in _checkouts: builds and runs (count=1)"
fi
