#!/usr/bin/env bash
# The test command: set up what is missing, then run every test (Rust unit, integration and golden
# tests on the CPU and wgpu backends).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
cargo test --release --all-targets
