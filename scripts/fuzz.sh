#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a given time each, one
# process at a time (the machine is shared), and stops at the first crash.
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]
#
#   seconds-per-target  default 60
#   targets             default: all of fuzz/fuzz_targets/ (frame_decode,
#                       handshake, ops, config)
#
# Environment:
#   SANITIZER  address (default: AddressSanitizer) or none (several times
#              faster; what FUZZING.md's long runs used for most targets)
#   MERGE=1    afterwards, add to the committed corpus fuzz/corpus/<t>/ the
#              new inputs that reach new coverage (keep it small: review
#              before committing)
#   FUZZ_ARGS  extra libFuzzer flags, e.g. "-runs=10000000"
#
# New inputs go to fuzz/work/<t>/ (ignored by git; kept between runs so a
# later run starts where this one stopped); the committed seeds in
# fuzz/corpus/<t>/ are read, never written. Crashes land in
# fuzz/artifacts/<t>/; copy one into fuzz/regressions/<t>/ so that the
# replay test (cargo test --manifest-path fuzz/Cargo.toml) keeps it fixed.
# Logs: fuzz/logs/<t>.log.
#
# cargo-fuzz needs nightly flags; on a stable toolchain RUSTC_BOOTSTRAP=1
# allows them (set here).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_decode handshake ops config)
fi
sanitizer="${SANITIZER:-address}"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz

echo "==> building ${targets[*]} (sanitizer: $sanitizer, debug assertions on)"
for t in "${targets[@]}"; do
  cargo fuzz build -a --sanitizer "$sanitizer" "$t"
done

mkdir -p logs
status=0
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t" "corpus/$t"
  echo "==> $t for ${secs}s (log: fuzz/logs/$t.log)"
  # One process: libFuzzer without -jobs/-fork runs in this process only
  # (with -jobs=1 it would fork one child and log to ./fuzz-0.log).
  # shellcheck disable=SC2086
  if cargo fuzz run -a --sanitizer "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" ${FUZZ_ARGS:-} >"logs/$t.log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "logs/$t.log" | tail -1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "logs/$t.log" || true
  else
    status=1
    echo "!! $t failed; the input is in fuzz/artifacts/$t/:" >&2
    ls -1 "artifacts/$t/" >&2 || true
    grep -E 'panicked|ERROR|SUMMARY' "logs/$t.log" | head -5 >&2 || true
    break
  fi
  if [ "${MERGE:-0}" = 1 ]; then
    echo "==> merging new coverage of $t into fuzz/corpus/$t"
    cargo fuzz run -a --sanitizer "$sanitizer" "$t" "corpus/$t" "work/$t" -- -merge=1 >>"logs/$t.log" 2>&1
    echo "    corpus/$t: $(find "corpus/$t" -type f | wc -l) files"
  fi
done
exit $status
