#!/usr/bin/env bash
# Build the wasm module (crate pmg-wasm) and its JS bindings into web/pkg/ as pmg.js/pmg_bg.wasm:
# cargo (release, SIMD128 from .cargo/config.toml), wasm-bindgen, then wasm-opt; then the npm
# package's assets and its tarball, $CARGO_TARGET_DIR/npm/pmg-web-<version>.tgz (default target/).
#   scripts/build-web.sh
#   PMG_WASM_OPT=-O2 scripts/build-web.sh     (another wasm-opt level; `none` skips wasm-opt)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-target}
# wasm-opt level: -Oz. Measured (BENCHMARKS.md "wasm module size"; headless Chromium 156, CPU path,
# 128-token prompt + 128 greedy tokens, 2 interleaved rounds): without wasm-opt, -O2, -O3 and -Oz all
# decode at 38.4-40.1 tok/s and prefill at 126-134 tok/s, i.e. the same within noise (V8 optimises
# the hot loops itself, and decode is bound by memory bandwidth), while the sizes differ:
# none 32.9 MB (5.82 MB gzip), -O2 21.0 MB (4.82), -O3 20.0 MB (4.81), -Oz 17.7 MB (4.76). So the
# smallest. wasm-opt takes 4-6 min on 2 cores (-O2 ~4.5, -Oz ~4-5.5, -O3 ~6.5; peak RSS 0.8 GB).
opt_level=${PMG_WASM_OPT:--Oz}
# Toolchain pieces (wasm target, wasm-bindgen CLI, web/node_modules with binaryen) come from
# scripts/setup.sh.
cargo build --release -p pmg-wasm --target wasm32-unknown-unknown
wasm-bindgen --target web --weak-refs --out-dir web/pkg --out-name pmg "$target/wasm32-unknown-unknown/release/pmg_wasm.wasm"
if grep -q command_export web/pkg/pmg.js; then
    echo "build-web: command_export shims present: __wasm_call_ctors is not being called" >&2
    exit 1
fi
wasm=web/pkg/pmg_bg.wasm
gz() { gzip -9 -c "$1" | wc -c; }
raw_size=$(stat -c %s "$wasm")
raw_gz=$(gz "$wasm")
if [ "$opt_level" != none ]; then
    # npm binaryen 132 (web/node_modules); Debian's binaryen 108 emits a broken module (PLATFORM.md).
    wasm_opt=web/node_modules/binaryen/bin/wasm-opt
    if [ ! -f "$wasm_opt" ]; then
        echo "build-web: $wasm_opt missing: run (cd web && npm ci) or scripts/setup.sh" >&2
        exit 1
    fi
    # The features the module uses (rustc's wasm32 defaults plus SIMD128; reference types for
    # wasm-bindgen's externref table). Listing them, rather than --all-features, keeps wasm-opt
    # from introducing instructions of features the browsers we target lack (GC, memory64, ...);
    # wasm-opt's validation fails the build if the module used anything else.
    start=$(date +%s)
    node --max-old-space-size=8192 "$wasm_opt" "$opt_level" \
        --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
    echo "build-web: wasm-opt $opt_level took $(( $(date +%s) - start )) s"
fi
echo "build-web: $wasm after wasm-bindgen: $raw_size B raw, $raw_gz B gzip -9"
if [ "$opt_level" != none ]; then
    echo "build-web: $wasm after wasm-opt $opt_level: $(stat -c %s "$wasm") B raw, $(gz "$wasm") B gzip -9"
fi
# The generator and scorer weights ship inside the npm package (pmg-web/models/), where generateImage()
# and personalize() fetch them by default; their names come from the manifest (web/src/models.js).
node web/scripts/generate.mjs
mkdir -p web/models
for f in $(node --input-type=module -e "import { generator } from './web/src/models.js'; console.log(Object.values(generator.files).map((f) => f.file).join(' '))"); do
    cp "models/$f" web/models/
done
cp models/EMOJI-MODELS.md web/models/
cp models/LICENSE-Apache-2.0.txt web/LICENSE
# The tarball a web developer installs (`npm install path/to/pmg-web-<version>.tgz`); `prepack`
# (web/scripts/check-pack.mjs) refuses an incomplete one.
pack_dir=$(mkdir -p "$target/npm" && cd "$target/npm" && pwd)
rm -f "$pack_dir"/pmg-web-*.tgz
(cd web && npm pack --silent --pack-destination "$pack_dir" >/dev/null)
echo "build-web: $(ls "$pack_dir"/pmg-web-*.tgz) ($(stat -c %s "$pack_dir"/pmg-web-*.tgz) B)"
