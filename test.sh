#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, doc tests) and the
# benchmark harness in quick mode (counts only, no timing assertions).
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --all-features --locked -- --test-threads=2
