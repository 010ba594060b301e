#!/usr/bin/env bash
# The test command: set up what is missing, then the habits (rustfmt, clippy with warnings as errors,
# natively and for wasm32), then every test: Rust unit, integration and golden tests on the CPU and
# wgpu backends; then the npm package pmg-web: unit tests of the wrapper, its
# TypeScript types, the wasm build in headless Chromium on CPU and WebGPU, and the fixture apps.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
# Mesa's drivers want a private runtime dir; without one they print (harmless) warnings.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR=$(mktemp -d)
    export XDG_RUNTIME_DIR
fi
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo clippy --release -p pmg-wasm --target wasm32-unknown-unknown -- -D warnings
cargo test --release --workspace --all-targets
scripts/docs.sh
scripts/build-web.sh
cd web
node --test tests/unit/
node_modules/.bin/tsc -p .
node tests/browser.mjs
# The package as a web developer gets it: the history module, the pinned default LLM, a CDN import; then
# the fixture apps (Vite, webpack, plain ESM) installed from the tarball and built for production.
node tests/package.mjs
node tests/fixtures.mjs
# The demo's full flow on its static build (what a static host serves).
../scripts/build-demo.sh ../target/demo-site
DEMO_SITE=target/demo-site node tests/demo.mjs
