#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration and doc tests, with
# the `tls` feature), then the benchmark harness in quick mode: it checks
# that every byte arrived and every connection came back, and asserts
# nothing about time.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --all-features --locked -- --test-threads=2
cargo run --release --locked -p redial-bench -- --quick --no-write
