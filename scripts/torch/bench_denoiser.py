"""Training throughput of the PyTorch denoiser mirror: samples per second of one training step
(forward + backward + per-tensor gradient clipping + AdamW + EMA, as train_denoiser.py runs it) on
random inputs shaped like the pack's (latents [b, 4, 16, 16]; captions of 2..16 tokens of width 576,
padded to the batch's longest, 10% null rows).

    python scripts/torch/bench_denoiser.py --device cpu --batches 32,128 --channels 64,128 96,192 128,256

Prints one JSON line per (channels, batch) and a Markdown table; the load average before and after each
measurement is reported because other jobs may share the CPU.

With `--burn target/release/pmg` it measures burn's own CPU step instead (`pmg train diffusion --pack`,
default UNet, 4 steps per batch size and `--workers` 1 and 2, on a synthetic pack unless `--pack` is given):
the step times come from the cumulative s_per_step of its loss.jsonl, the first step left out.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pmg_unet as P  # noqa: E402
from train_denoiser import make_optimizer, train_step  # noqa: E402


def inputs(b: int, d_text: int, device, g: torch.Generator):
    x = torch.randn(b, 4, 16, 16, generator=g)
    t = torch.randint(1000, (b,), generator=g).float()
    lens = torch.randint(2, 17, (b,), generator=g)
    null = torch.rand(b, generator=g) < 0.1
    lens = torch.where(null, torch.ones_like(lens), lens)
    L = int(lens.max())
    mask = torch.arange(L)[None, :] >= lens[:, None]
    text = torch.randn(b, L, d_text, generator=g) * (~mask & ~null[:, None])[:, :, None]
    v = torch.randn(b, 4, 16, 16, generator=g)
    return [z.to(device) for z in (x, t, text, mask, v)]


def bench(channels, batch, device, steps, warmup, bf16, d_text=576):
    torch.manual_seed(0)
    cfg = P.UNetConfig(channels=list(channels), d_text=d_text)
    model = P.UNet(cfg).to(device)
    params = list(model.parameters())
    opt = make_optimizer(params, 1e-4, device.type)
    ema = [p.detach().clone() for p in params]
    g = torch.Generator().manual_seed(1)
    data = [inputs(batch, d_text, device, g) for _ in range(2)]
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(model, opt, params, ema, data[i % 2], i + 1, bf16, device.type).item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {"channels": list(channels), "batch": batch, "params": P.num_params(model), "s_per_step": round(s, 4),
            "samples_per_s": round(batch / s, 1), "steps": steps, "min_s": round(min(times), 4), "max_s": round(max(times), 4)}


def bench_burn(pmg: str, pack: str | None, batches: list, steps: int = 4) -> list:
    tmp = tempfile.mkdtemp(prefix="pmg-bench-")
    if pack is None:
        from make_synthetic_pack import make

        pack = os.path.join(tmp, "pack.safetensors")
        make(pack)
    rows = []
    for b in batches:
        for workers in (1, 2):
            run = os.path.join(tmp, f"run-{b}-{workers}")
            load0 = os.getloadavg()[0]
            subprocess.run([pmg, "train", "diffusion", "--pack", pack, "--run", run, "--steps", str(steps), "--batch", str(b),
                            "--workers", str(workers), "--log-every", "1", "--checkpoint-every", "100000",
                            "--out", os.path.join(run, "export.safetensors")], check=True, capture_output=True)
            log = [json.loads(line) for line in open(os.path.join(run, "loss.jsonl"))]
            cum = [r["s_per_step"] * r["step"] for r in log]
            per = statistics.median(cum[i] - cum[i - 1] for i in range(1, len(cum)))
            r = {"burn": True, "batch": b, "workers": workers, "s_per_step": round(per, 4), "samples_per_s": round(b / per, 1),
                 "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
            print(json.dumps(r), flush=True)
            rows.append(r)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--channels", nargs="+", default=["64,128", "96,192", "128,256"])
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 5 for batch <= 32, 3 above on CPU; 20 on CUDA)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--sdpa", action="store_true", help="fused attention (F.scaled_dot_product_attention)")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--burn", default=None, help="measure burn's step instead: path of the pmg binary")
    ap.add_argument("--pack", default=None, help="with --burn: the training pack (default: a synthetic one)")
    a = ap.parse_args()
    if a.burn:
        bench_burn(a.burn, a.pack, [int(x) for x in a.batches.split(",")])
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    P.CrossAttention.use_sdpa = a.sdpa
    device = torch.device(a.device)
    bf16 = a.device == "cuda" and not a.no_bf16
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, sdpa {a.sdpa}, bf16 {bf16}", file=sys.stderr)
    for ch in a.channels:
        channels = [int(c) for c in ch.split(",")]
        for b in [int(x) for x in a.batches.split(",")]:
            steps = a.steps or (20 if a.device == "cuda" else (5 if b <= 32 else 3))
            load0 = os.getloadavg()[0]
            r = bench(channels, b, device, steps, a.warmup, bf16)
            r["load_before"], r["load_after"] = round(load0, 2), round(os.getloadavg()[0], 2)
            print(json.dumps(r), flush=True)
            rows.append(r)
    print("\n| channels | params | batch | s per step | samples per second |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['channels']} | {r['params'] / 1e6:.1f}M | {r['batch']} | {r['s_per_step']:.3f} | {r['samples_per_s']:.0f} |")


if __name__ == "__main__":
    main()
