#!/usr/bin/env python3
"""Train the independent judge: a concept classifier over every base emoji, for evaluation only.

The judge names what an image shows (a base emoji of emoji-datasource's emoji.json, skin tones
folded into their base). It is trained on every non-share-alike style of data/emoji/dataset.json,
held-out concepts included, and is never used by the product, by training or by candidate selection
(eval/judge/README.md). Its own accuracy is measured on OpenMoji, a style it never saw.

PyTorch (CPU or CUDA) trains it; `pmg eval judge` runs the exported weights in burn, and
crates/pmg-train/tests/judge.rs checks that burn's logits equal PyTorch's (golden.json, written by --golden).

  python eval/judge/train.py                       # train, export eval/judge/judge.safetensors
  python eval/judge/train.py --golden              # only rewrite eval/judge/golden.json from the export

Needs torch, numpy, pillow, safetensors (scripts/torch-env.sh makes a venv with them).
"""
import argparse
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "data", "emoji")
OUT = os.path.join(HERE, "judge.safetensors")
GOLDEN = os.path.join(HERE, "golden.json")
UNSEEN = "openmoji"  # share-alike: never trained on, the judge's own test style
WIDTHS = (32, 64, 128, 256)
BLOCKS = (1, 2, 2, 1)
SIZE = 64


class Block(nn.Module):
    """Basic residual block; stride 2 and a 1x1 projection where the width or size changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            self.bn_proj = nn.BatchNorm2d(cout)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.proj is None else self.bn_proj(self.proj(x))
        return F.relu(h + skip)


class Judge(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.stem = nn.Conv2d(3, WIDTHS[0], 3, 2, 1, bias=False)  # 64 -> 32
        self.bn_stem = nn.BatchNorm2d(WIDTHS[0])
        blocks, cin = [], WIDTHS[0]
        for i, (w, n) in enumerate(zip(WIDTHS, BLOCKS)):
            for j in range(n):
                blocks.append(Block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.blocks = nn.ModuleList(blocks)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        h = F.relu(self.bn_stem(self.stem(x)))
        for b in self.blocks:
            h = b(h)
        return self.head(self.drop(h.mean(dim=(2, 3))))


def to_input(rgba, bg):
    """[N,4,H,W] straight RGBA in [0,1] over a background [N,3,1,1] -> [N,3,H,W] in [-1,1]."""
    a = rgba[:, 3:4]
    return (rgba[:, :3] * a + bg * (1 - a)) * 2 - 1


def augment(rgba, gen):
    """Views a generator might draw: moved, scaled, turned a little, blurred, noisy, coarse, on
    other backgrounds. No flips (arrows, handed emoji) and no hue changes (colour names concepts)."""
    n = rgba.shape[0]
    dev = rgba.device
    u = lambda *s: torch.rand(*s, generator=gen, device=dev)
    scale = 0.8 + 0.35 * u(n)
    rot = (u(n) - 0.5) * math.radians(20)
    tx, ty = (u(n) - 0.5) * 0.25, (u(n) - 0.5) * 0.25
    cos, sin = torch.cos(rot) / scale, torch.sin(rot) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, rgba.shape, align_corners=False)
    # Premultiplied while resampling, so transparent pixels bring no colour in.
    pm = torch.cat([rgba[:, :3] * rgba[:, 3:4], rgba[:, 3:4]], 1)
    pm = F.grid_sample(pm, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    coarse = u(n) < 0.25
    if coarse.any():
        small = F.interpolate(pm[coarse], size=(SIZE // 2, SIZE // 2), mode="area")
        pm[coarse] = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    a = pm[:, 3:4].clamp(0, 1)
    rgb = pm[:, :3]
    bg = torch.ones(n, 3, 1, 1, device=dev)
    coloured = u(n) < 0.2
    bg[coloured] = u(int(coloured.sum()), 3, 1, 1)
    x = (rgb + bg * (1 - a)).clamp(0, 1)
    blur = u(n) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=dev)
        k = (k[:, None] * k[None, :]) / 256
        xb = F.conv2d(F.pad(x[blur], (2, 2, 2, 2), mode="replicate"), k.expand(3, 1, 5, 5), groups=3)
        x[blur] = xb
    noisy = u(n) < 0.3
    if noisy.any():
        x[noisy] = (x[noisy] + torch.randn(x[noisy].shape, generator=gen, device=dev) * 0.06 * u(int(noisy.sum()), 1, 1, 1)).clamp(0, 1)
    return x * 2 - 1


def load_data():
    with open(os.path.join(DATA, "dataset.json"), encoding="utf-8") as f:
        records = json.load(f)["records"]
    with open(os.path.join(DATA, "src", "emoji-datasource-google", "emoji.json"), encoding="utf-8") as f:
        emoji = json.load(f)
    bases = sorted(e["unified"] for e in emoji if e["category"] != "Component")
    # Display names: the dataset's label of each base emoji (a CLDR-style name: "red heart", not
    # emoji.json's Unicode "heavy black heart"), else emoji.json's name.
    names = {e["unified"]: e["name"].lower() for e in emoji}
    names.update({r["base"]: r["label"] for r in records if r["style"] == "google" and r["unified"] == r["base"] and r.get("label")})
    index = {b: i for i, b in enumerate(bases)}
    keep = [r for r in records if r["base"] in index]
    imgs = np.stack([np.asarray(Image.open(os.path.join(DATA, r["image"])).convert("RGBA")) for r in keep])
    return keep, imgs, bases, names, index


def evaluate(model, x, y, bs=512):
    model.eval()
    top1 = top5 = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            logits = model(x[i:i + bs])
            t5 = logits.topk(5, 1).indices
            top1 += (t5[:, 0] == y[i:i + bs]).sum().item()
            top5 += (t5 == y[i:i + bs, None]).any(1).sum().item()
    model.train()
    return top1 / len(x), top5 / len(x)


def fold(conv, bn):
    """Conv without bias + BatchNorm (eval) -> weight, bias."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * s[:, None, None, None], bn.bias - bn.running_mean * s


def export(model, bases, names, meta, path):
    t = {}
    t["stem.weight"], t["stem.bias"] = fold(model.stem, model.bn_stem)
    for i, b in enumerate(model.blocks):
        t[f"blocks.{i}.conv1.weight"], t[f"blocks.{i}.conv1.bias"] = fold(b.conv1, b.bn1)
        t[f"blocks.{i}.conv2.weight"], t[f"blocks.{i}.conv2.bias"] = fold(b.conv2, b.bn2)
        if b.proj is not None:
            t[f"blocks.{i}.proj.weight"], t[f"blocks.{i}.proj.bias"] = fold(b.proj, b.bn_proj)
    t["head.weight"], t["head.bias"] = model.head.weight, model.head.bias
    # f16 on disk (half the bytes); the golden values are computed from what the file holds.
    t = {k: v.detach().cpu().half().contiguous() for k, v in t.items()}
    strides = [1 if (j > 0 or i == 0) else 2 for i, n in enumerate(BLOCKS) for j in range(n)]
    md = {
        "format": "pmg-judge",
        "classes": json.dumps(bases),
        "names": json.dumps([names[b] for b in bases]),
        "strides": json.dumps(strides),
        "size": str(SIZE),
        "background": "white",
        **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()},
    }
    save_file(t, path, metadata=md)


class Folded(nn.Module):
    """The exported file as a network (what burn runs), for the golden values."""

    def __init__(self, t, strides):
        super().__init__()
        self.t, self.strides = t, strides

    def forward(self, x):
        t = self.t
        h = F.relu(F.conv2d(x, t["stem.weight"], t["stem.bias"], 2, 1))
        for i, s in enumerate(self.strides):
            p = f"blocks.{i}."
            y = F.relu(F.conv2d(h, t[p + "conv1.weight"], t[p + "conv1.bias"], s, 1))
            y = F.conv2d(y, t[p + "conv2.weight"], t[p + "conv2.bias"], 1, 1)
            skip = F.conv2d(h, t[p + "proj.weight"], t[p + "proj.bias"], s, 0) if p + "proj.weight" in t else h
            h = F.relu(y + skip)
        return F.linear(h.mean(dim=(2, 3)), t["head.weight"], t["head.bias"])


def golden_inputs():
    """Images both sides can make exactly: RGBA bytes from an integer formula (crates/pmg-train/tests/judge.rs)."""
    out = []
    for k in range(3):
        px = np.zeros((SIZE, SIZE, 4), np.uint8)
        for y in range(SIZE):
            for x in range(SIZE):
                for c in range(4):
                    px[y, x, c] = (x * 7 + y * 13 + c * 29 + k * 31 + (x * y) % (5 + k)) % 256
        out.append(px)
    return out


def write_golden():
    from safetensors import safe_open
    t = {k: v.float() for k, v in load_file(OUT).items()}
    with safe_open(OUT, "pt") as f:
        md = f.metadata()
    net = Folded(t, json.loads(md["strides"]))
    imgs = torch.tensor(np.stack(golden_inputs())).permute(0, 3, 1, 2).float() / 255
    x = to_input(imgs, torch.ones(1, 3, 1, 1))
    with torch.no_grad():
        logits = net(x)
    classes = json.loads(md["classes"])
    cases = []
    for i in range(len(logits)):
        p = logits[i].softmax(0)
        top = p.topk(5)
        cases.append({"image": i, "logits_first8": logits[i, :8].tolist(),
                      "top5": [[classes[j], float(v)] for v, j in zip(top.values.tolist(), top.indices.tolist())]})
    with open(GOLDEN, "w") as f:
        json.dump({"made_by": "eval/judge/train.py --golden (PyTorch, the folded export)",
                   "input": "golden_inputs(): RGBA byte (x*7 + y*13 + c*29 + k*31 + (x*y) % (5+k)) % 256, over white",
                   "tolerance": "logits within 1e-3 absolute; top-5 classes equal, probabilities within 1e-4",
                   "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {GOLDEN}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--golden", action="store_true", help="only rewrite golden.json from the export")
    args = ap.parse_args()
    if args.golden:
        write_golden()
        return
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    dev = torch.device(args.device)
    records, imgs, bases, names, index = load_data()
    x_all = torch.tensor(imgs).permute(0, 3, 1, 2).contiguous()  # uint8 [N,4,64,64]
    y_all = torch.tensor([index[r["base"]] for r in records])
    styles = sorted({r["style"] for r in records})
    train_styles = [s for s in styles if s != UNSEEN and not any(r.get("share_alike") for r in records if r["style"] == s)]
    # An epoch draws one image of each (base, style): skin-tone variations share their base's turn.
    groups = {}
    for i, r in enumerate(records):
        if r["style"] in train_styles:
            groups.setdefault((r["base"], r["style"]), []).append(i)
    groups = list(groups.values())
    print(f"{len(records)} images, {len(bases)} classes, train styles {train_styles}, {len(groups)} (base, style) groups")
    unseen = [i for i, r in enumerate(records) if r["style"] == UNSEEN and not r.get("skin_tones")]
    google = [i for i, r in enumerate(records) if r["style"] == "google" and not r.get("skin_tones")]

    def batch_of(idx):
        return x_all[idx].to(dev).float() / 255

    white = torch.ones(1, 3, 1, 1, device=dev)
    x_unseen = to_input(batch_of(unseen), white)
    y_unseen = y_all[unseen].to(dev)
    x_google = to_input(batch_of(google), white)
    y_google = y_all[google].to(dev)

    model = Judge(len(bases)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(groups) / args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.1)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    rng = random.Random(args.seed)
    log = []
    start = time.time()
    for epoch in range(args.epochs):
        order = [rng.choice(g) for g in groups]
        rng.shuffle(order)
        tot = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * args.batch:(s + 1) * args.batch]
            x = augment(batch_of(idx), gen)
            loss = F.cross_entropy(model(x), y_all[idx].to(dev), label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
        u1, u5 = evaluate(model, x_unseen, y_unseen)
        g1, g5 = evaluate(model, x_google, y_google)
        row = {"epoch": epoch + 1, "loss": tot / steps_per_epoch, "unseen_top1": u1, "unseen_top5": u5,
               "google_top1": g1, "google_top5": g5, "seconds": round(time.time() - start)}
        log.append(row)
        print(json.dumps(row), flush=True)
    meta = {"version": "judge-v1", "train_styles": train_styles, "unseen_style": UNSEEN,
            "epochs": args.epochs, "seed": args.seed, "unseen_top1": log[-1]["unseen_top1"],
            "unseen_top5": log[-1]["unseen_top5"], "unseen_images": len(unseen),
            "trained_on_heldout_concepts": "yes (all base emoji)", "log": log}
    export(model.cpu().eval(), bases, names, meta, OUT)
    print(f"wrote {OUT}")
    write_golden()


if __name__ == "__main__":
    main()
