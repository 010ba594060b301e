#!/usr/bin/env bash
# Stable Diffusion at real sizes (random weights of the published shapes; issue 21, deliver 6):
# diffusers on the CPU vs pmg natively (CPU and wgpu; f32, Q8_0, Q4_0 linear layers), same
# shapes, same machine, one run. Prints a markdown table for BENCHMARKS.md.
#   scripts/bench-sd.sh [RUNS]
# Folders: $PMG_SD_BENCH_DIR (default ~/.cache/pmg/sd-real), written once by scripts/bench_sd.py
# (~2.7 GB of f16 safetensors). Python: $PMG_TORCH_PY (diffusers, transformers, torch).
# Rows: $PMG_SD_BENCH_ROWS filters on "model/autoencoder/system/precision" (a grep -E pattern;
# e.g. '/cpu/|diffusers|taesd/wgpu/' skips the KL decodes on wgpu, slow on lavapipe).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-1}
dir=${PMG_SD_BENCH_DIR:-$HOME/.cache/pmg/sd-real}
py=${PMG_TORCH_PY:-/var/cache/pmg/torch-venv/bin/python}
rows=${PMG_SD_BENCH_ROWS:-.}
"$py" scripts/bench_sd.py make "$dir"
cargo build --release --quiet --bin pmg
bin=${CARGO_TARGET_DIR:-target}/release/pmg
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
out=$(mktemp)
# model, image side, latents per UNet call (2: guidance), autoencoder folder (- : the model's vae/)
cases=("sd-turbo 512 1 -" "sd-turbo 512 1 taesd" "bk-sdm-tiny 512 2 -")
for c in "${cases[@]}"; do
    read -r model size batch vae <<<"$c"
    vae_label=$([ "$vae" = - ] && echo "vae" || echo "$vae")
    label="$model $size px, batch $batch, $vae_label"
    vae_dir=$([ "$vae" = - ] && echo - || echo "$dir/$vae")
    vae_arg=$([ "$vae" = - ] && echo "" || echo "--vae $dir/$vae")
    if echo "$model/$vae_label/diffusers/f32" | grep -qE "$rows"; then
        echo "== $label: diffusers" >&2
        "$py" scripts/bench_sd.py time "$dir/$model" "$vae_dir" "$size" "$batch" "$runs" |
            sed "s|^{|{\"case\": \"$label\", |" >>"$out" || echo "diffusers failed" >&2
    fi
    for device in cpu wgpu; do
        for q in f32 q8_0 q4_0; do
            echo "$model/$vae_label/$device/$q" | grep -qE "$rows" || continue
            echo "== $label: pmg $device $q" >&2
            # shellcheck disable=SC2086
            "$bin" bench-sd --generator "$dir/$model" $vae_arg --size "$size" --batch "$batch" \
                --quantize "$q" --device "$device" --runs "$runs" |
                sed "s|^{|{\"case\": \"$label\", |" >>"$out" || echo "pmg $device $q failed" >&2
        done
    done
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peer = {r["case"]: r for r in rows if r["system"].startswith("diffusers")}
f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"
print("| case | system | load s | text ms | UNet call ms | decode ms | UNet + text weights MiB | peak RSS MiB | UNet vs diffusers | decode vs diffusers |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    p = peer.get(r["case"], {})
    ratio = lambda k: f"{p[k] / r[k]:.2f}x" if k in p and r.get(k) else "-"
    w = r.get("unet_weight_mb")
    w = "-" if w is None else f(w + r["text_weight_mb"])
    decode = f(r["decode_ms"]) if r.get("decode_ms") is not None or "decode_refused" not in r else "refused"
    print(f"| {r['case']} | {r['system']} | {f(r['load_s'], 1)} | {f(r['text_ms'])} | {f(r['unet_ms'])} | "
          f"{decode} | {w} | {f(r['peak_rss_mb'])} | {ratio('unet_ms')} | {ratio('decode_ms')} |")
PY
rm -f "$out"
