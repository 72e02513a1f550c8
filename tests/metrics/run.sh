#!/usr/bin/env bash
# Checks /metrics with a real Prometheus text parser: the prometheus_client
# Python package's (both its Prometheus text and its strict OpenMetrics
# parser), installed into a venv at tests/metrics/.venv when missing, then
# runs the test that parses scrapes with it and compares the values with the
# node's stats (core/tests/metrics.rs, ignored by plain `cargo test`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "run.sh: creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "prometheus_client>=0.20,<1"

cd "$root"
HEADCOUNT_TEST_PYTHON="$venv/bin/python" \
  cargo test -p headcount --locked --test metrics -- --ignored --exact scrape_parsed_by_prometheus_client_matches_stats
