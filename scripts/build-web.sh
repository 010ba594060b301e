#!/usr/bin/env bash
# Build the wasm module and its JS bindings into web/pkg/ (work in progress: issue 3).
#   scripts/build-web.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-target}
# Toolchain pieces (wasm target, wasm-bindgen CLI) come from scripts/setup.sh.
cargo build --release --lib --target wasm32-unknown-unknown --no-default-features --features cpu,wgpu
wasm-bindgen --target web --weak-refs --out-dir web/pkg "$target/wasm32-unknown-unknown/release/pmg.wasm"
if grep -q command_export web/pkg/pmg.js; then
    echo "build-web: command_export shims present: __wasm_call_ctors is not being called" >&2
    exit 1
fi
ls -l web/pkg/pmg_bg.wasm
