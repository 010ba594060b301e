#!/usr/bin/env bash
# Build and serve the demo (web/demo): a sticker shop and chat whose "made for you" panel runs PMG in
# the browser. Sets up what is missing (scripts/setup.sh --web: wasm target, wasm-bindgen, npm
# packages, the model file), builds the npm package (scripts/build-web.sh),
# then serves the repository as static files:
#   scripts/demo.sh            # then open http://localhost:8000/web/demo/
#   PORT=9000 scripts/demo.sh
# Any static host works the same way: the demo uses relative paths and needs no special headers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --web
scripts/build-web.sh
port=${PORT:-8000}
echo "pmg demo: open http://localhost:$port/web/demo/  (?device=webgpu|cpu to choose; Ctrl-C stops)"
exec python3 -m http.server "$port" --bind 127.0.0.1
