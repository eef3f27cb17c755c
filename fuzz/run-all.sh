#!/usr/bin/env bash
# Runs every fuzz target one after another for SECONDS_EACH seconds (default
# 600), growing a working corpus under fuzz/target/corpus/<target> from the
# committed seeds in fuzz/corpus/<target>. Needs cargo-fuzz; on a stable
# toolchain RUSTC_BOOTSTRAP=1 lets it pass the -Z flags it uses.
# Usage: fuzz/run-all.sh [SECONDS_EACH] [TARGET...]
#
# Without cargo-fuzz (a plain stable toolchain), `--replay` builds the
# targets as ordinary binaries (libFuzzer's driver, no coverage
# instrumentation) and runs each once over every input of its committed
# corpus and of its working corpus, if any; it fails on the first input
# that fails. Usage: fuzz/run-all.sh --replay [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
all=(endpoint units lifecycle proxy datapath datapath_tcp)

if [ "${1:-}" = "--replay" ]; then
  shift
  targets=("$@")
  [ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")
  RUSTFLAGS="--cfg fuzzing" cargo build --release --locked --bins
  for t in "${targets[@]}"; do
    inputs=()
    for dir in "corpus/$t" "target/corpus/$t"; do
      [ -d "$dir" ] || continue
      for f in "$dir"/*; do [ -f "$f" ] && inputs+=("$f"); done
    done
    echo "== $t: ${#inputs[@]} inputs"
    [ "${#inputs[@]}" -gt 0 ] || continue
    # In batches: libFuzzer takes the inputs as arguments.
    mkdir -p target
    if ! printf '%s\0' "${inputs[@]}" |
      xargs -0 -n 200 "target/release/$t" -timeout=30 -rss_limit_mb=4096 >"target/$t.replay.log" 2>&1; then
      grep -E 'Running:|panicked|SUMMARY' -A2 "target/$t.replay.log" | tail -20
      echo "== $t: an input failed (log: fuzz/target/$t.replay.log)"
      exit 1
    fi
  done
  exit 0
fi

secs="${1:-600}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t"
  echo "== $t: ${secs}s"
  cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    2>&1 | tee "target/$t.log" | grep -E '^(Done|stat::|SUMMARY)|panicked' || true
done
