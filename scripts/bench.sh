#!/usr/bin/env bash
# Benchmark: pmg on CPU and wgpu and llama.cpp on the same GGUF, prompt and thread count, in one run.
# Prints a markdown table for BENCHMARKS.md. Needs llama-cpp-python (see scripts/golden_llama_cpp.py).
#   scripts/bench.sh [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-3}
threads=${RAYON_NUM_THREADS:-$(nproc)}
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
cargo build --release --quiet --bin pmg
bin=${CARGO_TARGET_DIR:-target}/release/pmg
cpu=$(RAYON_NUM_THREADS=$threads "$bin" bench --device cpu --runs "$runs")
ids=$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["prompt_ids"]))' "$cpu")
wgpu=$("$bin" bench --device wgpu --runs "$runs" 2>/dev/null || echo '{"system":"pmg wgpu (unavailable)","prefill_tok_s":null,"decode_tok_s":null,"peak_rss_mb":null}')
ref=$(python3 scripts/bench_llama_cpp.py "$model" "$ids" "$threads" "$runs")
python3 - "$cpu" "$wgpu" "$ref" <<'PY'
import json, sys
cpu, wgpu, ref = (json.loads(a) for a in sys.argv[1:])
f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
r = lambda a, b: "-" if a is None or b is None else f"{a / b:.2f}x"
print("| system | prefill tok/s | decode tok/s | peak RSS MiB | prefill vs llama.cpp | decode vs llama.cpp |")
print("|---|---|---|---|---|---|")
for s in (cpu, wgpu, ref):
    print(f"| {s['system']} | {f(s['prefill_tok_s'])} | {f(s['decode_tok_s'])} | {f(s['peak_rss_mb'], 0)} | "
          f"{r(s['prefill_tok_s'], ref['prefill_tok_s'])} | {r(s['decode_tok_s'], ref['decode_tok_s'])} |")
PY
