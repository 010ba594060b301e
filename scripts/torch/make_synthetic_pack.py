"""A small random training pack in the format `pmg train pack` writes (crates/pmg-train/src/pack.rs `save_pack`),
for smoke tests of train_denoiser.py and of `pmg train diffusion --pack` where the real pack (which needs
the caption embeddings, `pmg train embed`) is not at hand. Its latents and captions are noise.

    python scripts/torch/make_synthetic_pack.py --out /tmp/synthetic-pack.safetensors
"""

import argparse
import json

import torch
from safetensors.torch import save_file


def make(out: str, records: int = 96, bases: int = 40, width: int = 576, max_len: int = 16, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(records, 4, 16, 16, generator=g)
    # Base of each record: every base gets one, the rest at random; sorted, so a base's records are together.
    group = torch.cat([torch.arange(bases), torch.randint(bases, (records - bases,), generator=g)]).sort().values
    bank = torch.tensor([int((group == b).nonzero()[0]) for b in range(bases)], dtype=torch.float32)
    # Captions: 1..4 per record, 2..max_len tokens; rows shared by a record's captions' prefixes.
    ncap = torch.randint(1, 5, (records,), generator=g)
    starts = torch.cumsum(ncap, 0) - ncap
    total = int(ncap.sum())
    lens = torch.randint(2, max_len + 1, (total,), generator=g)
    rows, caption_rows = [], torch.zeros(total, max_len)
    for r in range(records):
        prefix = torch.randn(max_len, width, generator=g) * 2.0
        prefix[:, 7] *= 30.0  # an outlier dimension, as SmolLM2 has
        base = len(rows)
        rows.extend(prefix)
        for c in range(int(starts[r]), int(starts[r] + ncap[r])):
            caption_rows[c, : lens[c]] = torch.arange(base, base + int(lens[c]), dtype=torch.float32)
    rows = torch.stack(rows)
    scale = rows.abs().amax(0) / 127.0
    q = (rows / scale).round().clamp(-128, 127).to(torch.int8)
    tensors = {
        "latents": latents.half(),
        "rows": q,
        "row_scale": scale,
        "caption_rows": caption_rows,
        "caption_len": lens.float(),
        "record_captions": torch.stack([starts, starts + ncap], 1).float(),
        "bank": bank,
        "record_group": group.float(),
    }
    names = [f"synthetic {b}" for b in range(bases)]
    save_file(tensors, out, metadata={"bank_names": json.dumps(names), "format": "pmg-train-pack"})
    print(f"wrote {out}: {records} records, {bases} bases, {total} captions, {len(rows)} rows of {width}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--records", type=int, default=96)
    ap.add_argument("--bases", type=int, default=40)
    ap.add_argument("--width", type=int, default=576)
    a = ap.parse_args()
    make(a.out, a.records, a.bases, a.width)
