#!/usr/bin/env bash
# Runs every fuzz target one after another for SECONDS_EACH seconds (default
# 600), growing a working corpus under fuzz/target/corpus/<target> from the
# committed seeds in fuzz/corpus/<target>. Needs cargo-fuzz; on a stable
# toolchain RUSTC_BOOTSTRAP=1 lets it pass the -Z flags it uses.
# Usage: fuzz/run-all.sh [SECONDS_EACH] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(endpoint units lifecycle proxy)
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t"
  echo "== $t: ${secs}s"
  cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    2>&1 | tee "target/$t.log" | grep -E '^(Done|stat::|SUMMARY)|panicked' || true
done
