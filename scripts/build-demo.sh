#!/usr/bin/env bash
# A static build of the demo that any static host can serve as it is (relative paths, no special
# headers, no server code): the page, the pmg-web package (JS, wasm, generator weights) and the LLM,
# laid out as in the repository so the demo's relative URLs hold.
#   scripts/build-demo.sh [OUT]     # default target/demo-site; then serve OUT, open OUT/web/demo/
# Needs scripts/build-web.sh first (web/pkg, web/models) and the model file (scripts/fetch-models.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# OUT is relative to where the script is called from.
out=$(realpath -m "${1:-$root/target/demo-site}")
cd "$root"
gguf=models/SmolLM2-135M-Instruct.Q4_1.gguf
for f in web/pkg/pmg_bg.wasm web/models/emoji-denoiser.safetensors "$gguf"; do
    [ -f "$f" ] || { echo "build-demo: $f is missing (run scripts/build-web.sh and scripts/fetch-models.sh)" >&2; exit 1; }
done
case "$out" in
    / | "$root" | "$root/web" | "$HOME") echo "build-demo: refusing to replace $out" >&2; exit 1 ;;
esac
rm -rf "$out"
mkdir -p "$out/web" "$out/models"
cp -r web/demo web/src web/pkg web/models "$out/web/"
# The demo points modelBaseUrl at models/: the LLM (98 MB, a hard link where the file system allows
# it) and the generator, scorer and soft-prompt weights.
ln "$gguf" "$out/$gguf" 2>/dev/null || cp "$gguf" "$out/$gguf"
cat > "$out/index.html" <<'HTML'
<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url=web/demo/"><a href="web/demo/">pmg demo</a>
HTML
echo "build-demo: $out ($(du -sh --apparent-size "$out" | cut -f1)); serve it with any static server and open /web/demo/"
