#!/usr/bin/env bash
# Runs the local-core benchmark (core/benches/local.rs) at 1, 2, 4, 8 and 16
# threads from one prebuilt release binary, for a machine with that many
# cores. Building happens first and is not timed; the benchmark itself runs
# with no cargo in the way.
#
#   scripts/bench-scaling.sh [bench options...]     e.g. --secs 1 --rounds 5
#
# Environment:
#   THREADS    thread counts (default 1,2,4,8,16)
#   BENCH_BIN  an already built benchmark binary (e.g. copied from another
#              machine of the same architecture): skips building
#   HEADCOUNT_FFI_LIB  the libheadcount.so for the hc_add row, with BENCH_BIN
#   OUT        where to write the report (default target/bench-scaling-<host>-<date>.md)
#
# The report starts with the machine (lscpu model, cores), date and exact
# command, ready to paste into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

threads="${THREADS:-1,2,4,8,16}"
bin="${BENCH_BIN:-}"
if [[ -z "$bin" ]]; then
  echo "building the benchmark (release)..." >&2
  bin=$(cargo bench -p headcount --bench local --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\/local-[0-9a-f]*\)".*/\1/p' | tail -n 1)
  [[ -n "$bin" ]] || { echo "error: could not find the built benchmark binary" >&2; exit 1; }
  # The C library beside it, for the benchmark's hc_add row (found next to
  # target/release/deps/, or through HEADCOUNT_FFI_LIB with BENCH_BIN).
  cargo build --release -p headcount-ffi >&2
fi
[[ -x "$bin" ]] || { echo "error: $bin is not an executable" >&2; exit 1; }

cores=$(nproc)
max=$(tr ',' '\n' <<<"$threads" | sort -n | tail -n 1)
if ((max > cores)); then
  echo "warning: $max threads on $cores cores: the top counts will be oversubscribed" >&2
fi

out="${OUT:-target/bench-scaling-$(hostname)-$(date -u +%Y%m%d-%H%M%S).md}"
mkdir -p "$(dirname "$out")"
model=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
{
  echo "Machine: ${model:-unknown}, $cores cores ($(uname -sr))"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "Command: THREADS=$threads scripts/bench-scaling.sh $*"
  echo "Binary: $bin --bench --threads $threads $*"
  echo
  "$bin" --bench --threads "$threads" "$@"
} 2>&1 | tee "$out"
echo "report written to $out" >&2
