"""The denoiser stage of `pmg train diffusion` (crates/pmg-train/src/stages.rs `diffusion`), in PyTorch.

Training tool only: it reads the training pack that `pmg train pack` writes (crates/pmg-train/src/pack.rs) and
exports the EMA weights as a denoiser file that `pmg::diffusion::load_denoiser` reads unchanged
(f16, burn's tensor names, the same metadata and retrieval bank as the burn export). The model is the
mirror in pmg_unet.py (checked against burn by crates/pmg/tests/unet_torch.rs).

    python scripts/torch/train_denoiser.py --pack data/emoji/train-pack.safetensors --run runs/diffusion-torch \
        --device cuda --batch 128 --steps 9000 --cycle 3000 --hours 2 --export models/emoji-denoiser.safetensors

What follows the burn recipe (file where it is defined):
- v-prediction on the cosine schedule: x_t = a x0 + s eps, target v = a eps - s x0, a = sqrt(alpha_bar[t]),
  s = sqrt(1 - alpha_bar[t]), t uniform in 0..999, alpha_bar from Nichol & Dhariwal 2021 eq. 17 with
  s = 0.008, clamped >= 1e-4 (crates/pmg/src/diffusion/schedule.rs `NoiseSchedule::cosine`); loss = mean squared error.
- a batch: records uniformly (`--sample-by record`) or a base emoji then one of its records (`base`); one of
  the record's captions uniformly; with probability 0.1 the null conditioning instead (one zero row;
  crates/pmg/src/diffusion/mod.rs `Conditioning::null`, stages.rs `CAPTION_DROPOUT`); captions padded to the batch's
  longest with a padding mask (mod.rs `context_batch`).
- AdamW (crates/pmg-train/src/lib.rs `optimizer`, burn-optim adamw.rs): betas 0.9/0.999, eps 1e-5, decoupled weight
  decay 1e-4 on every parameter; gradients clipped to L2 norm 1.0 *per parameter tensor* (burn's
  ModuleOptimizer clips each tensor's gradient on its own, grad_clipping/base.rs `clip_by_norm`), not
  globally.
- learning rate (mod.rs `learning_rate`): linear warm-up, cosine decay to 10% of the peak; with `--cycle`
  the shape restarts every cycle at half the previous peak (SGDR). Warm-up default as the CLI's:
  (cycle or steps) / 20, clamped to 1..200 (crates/pmg-cli/src/train.rs `RunArgs::config`).
- EMA of the weights (stages.rs): decay min(0.999, (1 + step) / (10 + step)) after each step (step counted
  after the update), starting from the initial weights; the export holds the EMA.
- recipe defaults (crates/pmg-cli/src/train.rs `DIFFUSION`): 9000 steps, batch 32, lr 5e-4, cycle 3000, seed 1.

What differs from the burn run: the random numbers (PyTorch's generator, seeded per step from (seed, step),
so a resumed run still sees the batches an unbroken one would, but not burn's batches), and the
initial weights (same distributions, torch's generator).

Run folder: ckpt.pt (module, EMA, optimizer, step, RNG states; written to a temporary file and renamed),
config.json, loss.jsonl ({"step", "loss", "lr", "s_per_step", "samples_per_s"} every --log-every steps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pmg_unet as P  # noqa: E402

TRAIN_STEPS = 1000  # schedule.rs TRAIN_STEPS
CAPTION_DROPOUT = 0.1  # stages.rs CAPTION_DROPOUT
TEXT_PREFIX = "Emoji:"  # diffusion/mod.rs TEXT_PREFIX (written into the export's metadata)
F32_MIN_POSITIVE = 1.1754944e-38  # burn's clip_by_norm adds this to the norm


# ------------------------------------------------------------------------------------------ data


class Pack:
    """A training pack (crates/pmg-train/src/pack.rs `save_pack` / `load_pack`), with the same checks on indices.

    latents F16 [n, c, h, w] (scaled); rows I8 [u, width] and row_scale F32 [width] (a caption token's
    hidden state is rows[r] * row_scale); caption_rows F32 [n_captions, max_len] (row index per token);
    caption_len F32 [n_captions]; record_captions F32 [n, 2] (start, end into the captions; the first is
    the record's name); bank F32 [n_bank] (record of each base emoji) + metadata bank_names;
    record_group F32 [n] (base of each record)."""

    def __init__(self, path: str):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != "pmg-train-pack":
            raise ValueError(f"{path}: not a pmg training pack (`pmg train pack` writes one)")

        def index(x: torch.Tensor, below: int, what: str) -> torch.Tensor:
            if x.numel() and (bool((x < 0).any()) or bool((x != x.round()).any()) or bool((x >= below).any())):
                raise ValueError(f"{path}: {what} out of range (< {below})")
            return x.to(torch.long)

        self.latents = t["latents"].to(torch.float32)
        n, c, h, w = self.latents.shape
        self.shape = (c, h, w)
        self.rows = t["rows"].to(torch.int8)
        u, self.width = self.rows.shape
        self.row_scale = t["row_scale"].to(torch.float32)
        assert self.row_scale.shape == (self.width,), "row_scale width"
        cr = t["caption_rows"]
        nc, self.max_len = cr.shape
        self.caption_len = index(t["caption_len"] - 1, self.max_len, "caption length - 1") + 1
        # Only the positions inside a caption are indices (padding holds 0).
        pos = torch.arange(self.max_len)[None, :]
        self.caption_rows = index(torch.where(pos < self.caption_len[:, None], cr, torch.zeros_like(cr)), u, "row index")
        rc = t["record_captions"]
        assert tuple(rc.shape) == (n, 2), f"record_captions {tuple(rc.shape)}"
        self.cap_start = index(rc[:, 0], nc, "caption start")
        self.cap_end = index(rc[:, 1] - 1, nc, "caption end - 1") + 1
        if bool((self.cap_start >= self.cap_end).any()):
            raise ValueError(f"{path}: a record without captions")
        self.bank_names = json.loads(meta["bank_names"])
        self.bank = index(t["bank"], n, "bank record")
        assert len(self.bank) == len(self.bank_names), "bank entries vs names"
        self.record_group = index(t["record_group"], len(self.bank), "record group")
        counts = torch.bincount(self.record_group, minlength=len(self.bank))
        if bool((counts == 0).any()):
            raise ValueError(f"{path}: a base emoji without records")
        # Members of each group, contiguous (records in increasing order within a group, as load_pack's).
        self.group_members = torch.argsort(self.record_group, stable=True)
        self.group_offset = torch.cumsum(counts, 0) - counts
        self.group_size = counts
        self.n = n

    def conditioning(self, caption: int) -> torch.Tensor:
        """One caption's hidden states [len, width] (dequantized, as `load_pack`)."""
        L = int(self.caption_len[caption])
        return self.rows[self.caption_rows[caption, :L]].to(torch.float32) * self.row_scale

    def retrieval(self) -> tuple:
        """The export's bank (pack.rs `DenoiserData::retrieval`): each base's first record, its name caption
        (the record's first caption) and latent."""
        conds = [self.conditioning(int(self.cap_start[p])) for p in self.bank]
        lat = self.latents[self.bank].reshape(len(self.bank), -1)
        return P.retrieval_bank(conds, lat, self.bank_names)


class Batches:
    """The batch of a step, drawn on the CPU from a generator seeded by (seed, step); tensors then on `device`."""

    def __init__(self, pack: Pack, device: torch.device, sample_by: str, fixed_len: bool):
        self.pack, self.device, self.sample_by = pack, device, sample_by
        self.latents = pack.latents.to(device)
        self.rows = pack.rows.to(device)
        self.row_scale = pack.row_scale.to(device)
        self.caption_rows = pack.caption_rows.to(device)
        self.caption_len = pack.caption_len
        # Padding every batch to the longest caption keeps shapes fixed (for --compile); masked
        # positions get no attention either way (their scores are -1e4 or -inf: exp() is 0).
        self.fixed_len = fixed_len
        alpha_bar = cosine_alpha_bar(TRAIN_STEPS)
        # schedule.rs `coefficients`: sqrt in f64, then f32.
        self.a = torch.tensor([math.sqrt(x) for x in alpha_bar], dtype=torch.float32, device=device)
        self.s = torch.tensor([math.sqrt(1.0 - x) for x in alpha_bar], dtype=torch.float32, device=device)

    def draw(self, seed: int, step: int, batch: int) -> tuple:
        g = torch.Generator().manual_seed(step_seed(seed, step))
        p = self.pack
        if self.sample_by == "record":
            rec = torch.randint(p.n, (batch,), generator=g)
        else:
            grp = torch.randint(len(p.bank), (batch,), generator=g)
            k = (torch.rand(batch, generator=g) * p.group_size[grp]).long().clamp(max=p.group_size[grp] - 1)
            rec = p.group_members[p.group_offset[grp] + k]
        ncap = p.cap_end[rec] - p.cap_start[rec]
        cap = p.cap_start[rec] + (torch.rand(batch, generator=g) * ncap).long().clamp(max=ncap - 1)
        null = torch.rand(batch, generator=g) < CAPTION_DROPOUT
        t = torch.randint(TRAIN_STEPS, (batch,), generator=g)
        noise = torch.randn((batch, *p.shape), generator=g)

        lens = torch.where(null, torch.ones_like(cap), self.caption_len[cap])
        L = p.max_len if self.fixed_len else int(lens.max())
        dev = self.device
        rec, cap, t, lens, null = rec.to(dev), cap.to(dev), t.to(dev), lens.to(dev), null.to(dev)
        noise = noise.to(dev)
        pos = torch.arange(L, device=dev)[None, :]
        mask = pos >= lens[:, None]  # True = padding (context_batch)
        keep = ~mask & ~null[:, None]  # the null conditioning is one zero row
        text = self.rows[self.caption_rows[cap, :L]].to(torch.float32) * self.row_scale
        text = text * keep[:, :, None]
        x0 = self.latents[rec]
        a = self.a[t][:, None, None, None]
        s = self.s[t][:, None, None, None]
        xt = a * x0 + s * noise
        v = a * noise - s * x0
        return xt, t.to(torch.float32), text, mask, v


def cosine_alpha_bar(steps: int) -> list:
    """schedule.rs `NoiseSchedule::cosine` (Nichol & Dhariwal 2021, eq. 17, s = 0.008; >= 1e-4), in f64."""
    s = 0.008

    def f(t):
        return math.cos(((t / steps) + s) / (1.0 + s) * math.pi / 2) ** 2

    return [max(f(i + 1) / f(0.0), 1e-4) for i in range(steps)]


def step_seed(seed: int, step: int) -> int:
    """A generator seed per step (the role of train/mod.rs `step_rng`; not its numbers)."""
    return ((seed * 0x100000001B3) ^ (2 << 48) ^ step) & ((1 << 63) - 1)


# ------------------------------------------------------------------------------------ schedule


def learning_rate(lr: float, steps: int, warmup: int, cycle: int | None, step: int) -> float:
    """train/mod.rs `learning_rate`."""
    if cycle:
        k = step // cycle
        peak, length, step = lr * 0.5**k, max(min(cycle, max(steps - k * cycle, 0)), 1), step - k * cycle
    else:
        peak, length = lr, steps
    warmup = min(warmup, length)
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(length - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(p, 1.0))))


def clip_per_tensor(params: list, max_norm: float = 1.0) -> None:
    """burn's GradientClipping::Norm(1.0) as the ModuleOptimizer applies it: each parameter's gradient
    scaled by min(1, max_norm / (||g|| + min_positive)) on its own."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch._foreach_norm(grads)
    coef = torch.clamp(max_norm / (torch.stack(norms).float() + F32_MIN_POSITIVE), max=1.0)
    torch._foreach_mul_(grads, [c.to(g.dtype) for c, g in zip(coef.unbind(), grads)])


def ema_decay(step: int) -> float:
    """stages.rs: min(0.999, (1 + step) / (10 + step)), computed in f32 there."""
    return float(np.float32(min(np.float32(0.999), np.float32(1 + step) / np.float32(10 + step))))


# ----------------------------------------------------------------------------------- checkpoint


def make_optimizer(params: list, lr: float, device_type: str):
    """AdamW as burn's (betas 0.9/0.999, eps 1e-5, weight decay 1e-4); fused on CUDA."""
    kw = dict(lr=lr, betas=(0.9, 0.999), eps=1e-5, weight_decay=1e-4)
    return torch.optim.AdamW(params, fused=True, **kw) if device_type == "cuda" else torch.optim.AdamW(params, foreach=True, **kw)


def train_step(net, opt, params: list, ema: list, batch, step: int, bf16: bool, device_type: str):
    """One step: v-MSE, backward, per-tensor clipping, AdamW, then the EMA at its decay for `step`
    (the step count after this one). Returns the loss on the device (no sync)."""
    xt, t, text, mask, v = batch
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
        pred = net(xt, t, text, mask)
    loss = torch.mean((pred.float() - v) ** 2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    clip_per_tensor(params)
    opt.step()
    with torch.no_grad():
        torch._foreach_lerp_(ema, [p.detach().float() for p in params], 1.0 - ema_decay(step))
    return loss


def save_checkpoint(run: str, model, ema, opt, step: int, args, extra: dict) -> None:
    state = {
        "model": model.state_dict(),
        "ema": [e.detach().cpu() for e in ema],
        "optimizer": opt.state_dict(),
        "step": step,
        "unet_config": P.asdict(model.cfg),
        "args": vars(args),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        **extra,
    }
    tmp = os.path.join(run, "ckpt.pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, os.path.join(run, "ckpt.pt"))  # a crash mid-write keeps the last checkpoint


def rust_float(x: float) -> str:
    """f64 Display of Rust (shortest digits, no exponent): 0.0005, 0.00001."""
    return np.format_float_positional(x, trim="-")


def export(path: str, model, ema, pack: Pack, args, step: int, seconds: float, final_loss: float | None) -> None:
    """stages.rs `diffusion` export + `facts` + `write_export`: EMA weights, f16, bank, metadata."""
    params = dict(model.named_parameters())
    tensors = P.to_burn(model, {n: e for n, e in zip(params, ema)})
    bank, bank_meta = pack.retrieval()
    tensors.update(bank)
    meta = {
        "config": model.cfg.to_json(),
        "prediction": "v",
        "schedule": f"cosine-{TRAIN_STEPS}",
        "text_prefix": TEXT_PREFIX,
        "sample_by": args.sample_by,
        **bank_meta,
        "steps": str(step),
        "batch": str(args.batch),
        "lr": rust_float(args.lr),
        "seed": str(args.seed),
        "train_seconds_last_process": f"{seconds:.0f}",
        "format": "pmg",
        "trainer": f"pytorch {torch.__version__} (scripts/torch/train_denoiser.py)",
    }
    if final_loss is not None and math.isfinite(final_loss):
        meta["final_loss"] = f"{final_loss:.5f}"
    if step < args.steps:
        meta["planned_steps"] = str(args.steps)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    P.save_burn(path, tensors, meta, dtype=torch.float16)
    n = sum(v.numel() for k, v in tensors.items() if not k.startswith("retrieval."))
    print(f"wrote {path} ({n} parameters, {os.path.getsize(path)} bytes)", file=sys.stderr)


def last_logged_loss(run: str) -> float | None:
    try:
        with open(os.path.join(run, "loss.jsonl")) as f:
            lines = [ln for ln in f if ln.strip()]
        return json.loads(lines[-1])["loss"] if lines else None
    except (OSError, ValueError, KeyError):
        return None


# ----------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", required=True, help="training pack (pmg train pack)")
    ap.add_argument("--run", default="runs/diffusion-torch", help="run folder (checkpoint, loss.jsonl)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=9000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--cycle", type=int, default=3000, help="SGDR cycle length (0: one cosine over --steps)")
    ap.add_argument("--warmup", type=int, default=None, help="default (cycle or steps) / 20, within 1..200")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--channels", default="64,128", help="UNet widths at 16x16 and 8x8")
    ap.add_argument("--d-context", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--sample-by", default="record", choices=["record", "base"])
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--checkpoint-every", type=int, default=250)
    ap.add_argument("--until", type=int, default=None, help="stop (with a checkpoint) at this step")
    ap.add_argument("--hours", type=float, default=None, help="wall-clock budget: checkpoint and stop before it runs out")
    ap.add_argument("--resume", action="store_true", help="continue the run folder's checkpoint")
    ap.add_argument("--export", default=None, help="write the EMA weights as a burn denoiser file when the process stops")
    ap.add_argument("--bf16", default="auto", choices=["auto", "on", "off"], help="bf16 autocast (auto: on for CUDA, off on the CPU)")
    ap.add_argument("--sdpa", default="auto", choices=["auto", "on", "off"], help="fused attention (auto: on for CUDA)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet (fixed caption padding)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = ap.parse_args(argv)
    args.channels = [int(c) for c in args.channels.split(",")]
    if args.cycle and not (0 < args.cycle < args.steps):
        args.cycle = 0  # as the CLI: a cycle as long as the run is no cycle
    if args.warmup is None:
        args.warmup = min(max((args.cycle or args.steps) // 20, 1), 200)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    device = torch.device(args.device)
    P.CrossAttention.use_sdpa = args.sdpa == "on" or (args.sdpa == "auto" and args.device == "cuda")
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and args.device == "cuda")
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.time()
    budget = args.hours * 3600.0 if args.hours else None

    pack = Pack(args.pack)
    cfg = P.UNetConfig(latent_channels=pack.shape[0], channels=args.channels, d_text=pack.width, d_context=args.d_context, heads=args.heads)
    os.makedirs(args.run, exist_ok=True)
    ckpt_path = os.path.join(args.run, "ckpt.pt")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False) if args.resume and os.path.exists(ckpt_path) else None
    if ckpt is not None and ckpt["unet_config"] != P.asdict(cfg):
        sys.exit(f"{ckpt_path} is a {ckpt['unet_config']} UNet, the arguments ask for {P.asdict(cfg)}")

    torch.manual_seed(args.seed)  # initial weights
    model = P.UNet(cfg).to(device)
    params = [p for p in model.parameters()]
    opt = make_optimizer(params, args.lr, args.device)
    step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        ema = [e.to(device) for e in ckpt["ema"]]
        torch.set_rng_state(ckpt["rng_cpu"])
        if ckpt.get("rng_cuda") is not None and args.device == "cuda":
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        print(f"resuming {args.run} at step {step}", file=sys.stderr)
    else:
        ema = [p.detach().clone().float() for p in params]
        if not args.resume and os.path.exists(os.path.join(args.run, "loss.jsonl")):
            os.remove(os.path.join(args.run, "loss.jsonl"))
    with open(os.path.join(args.run, "config.json"), "w") as f:
        json.dump({**vars(args), "unet": P.asdict(cfg), "parameters": P.num_params(model)}, f, indent=2)
    log = open(os.path.join(args.run, "loss.jsonl"), "a")

    net = torch.compile(model) if args.compile else model
    batches = Batches(pack, device, args.sample_by, fixed_len=args.compile)
    print(f"{P.num_params(model)} parameters, {pack.n} records, {len(pack.bank)} bases, device {device}"
          f"{', bf16 autocast' if bf16 else ''}", file=sys.stderr)

    window, last_loss, start_step, t0 = [], float("nan"), step, time.time()
    stop_reason = None

    def out_of_time() -> bool:
        """Two more steps (at the mean time per step so far), the checkpoint and the export no longer fit."""
        if budget is None or step == start_step:
            return False
        per = (time.time() - t0) / (step - start_step)
        return time.time() - started + 2 * per + min(30.0, 0.05 * budget) > budget

    while step < args.steps:
        if args.until is not None and step >= args.until:
            stop_reason = f"--until {args.until}"
            break
        if out_of_time():
            stop_reason = f"--hours {args.hours} budget"
            break
        lr = learning_rate(args.lr, args.steps, args.warmup, args.cycle or None, step)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = train_step(net, opt, params, ema, batches.draw(args.seed, step, args.batch), step + 1, bf16, args.device)
        step += 1
        # The loss stays on the device until a log line (no sync per step on CUDA).
        window.append(loss.detach())
        last = step == args.steps or (args.until is not None and step >= args.until)
        if step % args.log_every == 0 or last or out_of_time():
            values = torch.stack(window).float().cpu()
            window.clear()
            if not bool(torch.isfinite(values).all()):
                sys.exit(f"loss became non-finite between steps {step - len(values)} and {step}")
            mean, last_loss = float(values.mean()), float(values[-1])
            per = (time.time() - t0) / (step - start_step)
            log.write(json.dumps({"step": step, "loss": mean, "lr": lr, "s_per_step": per, "samples_per_s": args.batch / per}) + "\n")
            log.flush()
            print(f"step {step:>6}/{args.steps}  loss {mean:.5f}  lr {lr:.2e}  {per:.3f} s/step  "
                  f"eta {per * (args.steps - step) / 60:.0f} min", file=sys.stderr)
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint(args.run, model, ema, opt, step, args, {})
    save_checkpoint(args.run, model, ema, opt, step, args, {})
    seconds = time.time() - started
    if stop_reason:
        print(f"stopped at step {step}/{args.steps} ({stop_reason}); continue with --resume", file=sys.stderr)
    if args.export:
        final = last_loss if math.isfinite(last_loss) else last_logged_loss(args.run)
        export(args.export, model, ema, pack, args, step, seconds, final)


if __name__ == "__main__":
    main()
