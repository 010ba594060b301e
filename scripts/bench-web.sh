#!/usr/bin/env bash
# Browser benchmark: pmg (CPU, WebGPU) vs wllama (default and compat builds, 1 and 2 threads) in one
# headless Chromium run, plus llama.cpp and pmg native. See scripts/bench-web.mjs for the options.
#   scripts/bench-web.sh [--runs N] [--json out.json] ...
set -euo pipefail
exec node "$(dirname "$0")/bench-web.mjs" "$@"
