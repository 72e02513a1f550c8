#!/usr/bin/env bash
# Builds the Elixir package (its compiler task builds the release library and
# the Erlang binding's NIF) and runs its ExUnit suite: supervision, kills,
# config errors, error conventions, two :peer nodes discovering each other
# over loopback distribution (starts epmd on 127.0.0.1 if needed), and a new
# mix project using the package as a path dependency.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for tool in mix erl cc make cargo epmd; do
    command -v "$tool" >/dev/null || { echo "run-tests.sh: '$tool' not found (need Elixir, Erlang/OTP with erlang-dev, a C compiler, make, cargo)" >&2; exit 1; }
done

cd "$here"
export MIX_ENV=test
mix format --check-formatted
mix compile --warnings-as-errors
timeout 900 mix test
