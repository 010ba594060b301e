"""Writes crates/pmg/tests/golden/unet_torch.safetensors: a tiny random denoiser in burn's names and format, an
input batch, and the PyTorch mirror's output on it. crates/pmg/tests/unet_torch.rs loads the weights with
`pmg::diffusion::load_denoiser`, runs burn's `UNet::forward` on the CPU and compares.

    "$(scripts/torch-env.sh)" scripts/torch/golden_unet.py

With `--check DENOISER OUT` it writes only inputs and the mirror's output for an existing denoiser file
(the shipped one, or an export of train_denoiser.py) to OUT, for the ignored test
`denoiser_file_matches_the_mirror` in crates/pmg/tests/unet_torch.rs (env PMG_DENOISER=DENOISER PMG_UNET_CHECK=OUT).

Contents (all but the weights prefixed `golden.`; the test takes those out before loading):
- the UNet parameters (burn names and layouts; values rounded to f16 and stored as F16, so the file is
  small and both sides compute with exactly the same weights; norm gammas/betas away from 1/0 and ff1
  weights scaled up so that gelu sees inputs of a few units), `config` metadata (UNetConfig JSON);
- a two-entry retrieval bank (`retrieval.*`, `retrieval_names`), as the training export writes it;
- golden.x [2,4,16,16], golden.t [2], golden.text [2,5,d_text], golden.mask [2,5] (1 = padding; row 1 has
  its last two positions padded, and junk there, so an ignored mask shows), golden.out [2,4,16,16] (F32).
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pmg_unet as P  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "golden", "unet_torch.safetensors")


def main():
    torch.manual_seed(20261203)
    cfg = P.UNetConfig(latent_channels=4, channels=[16, 32], d_text=24, d_context=16, heads=2)
    model = P.UNet(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Norm parameters away from 1/0, so that a gamma/beta swap shows; every value rounded to f16.
            if name.endswith("weight") and p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1 and any(name.startswith(m + ".") for m, mod in model.named_modules() if isinstance(mod, (torch.nn.LayerNorm, torch.nn.GroupNorm))):
                p.copy_(0.2 * torch.randn_like(p))
            if ".ff1." in name:
                p.mul_(4.0)  # pre-gelu activations of a few units, where erf and tanh gelu differ most
            p.copy_(p.half().float())
    model.eval()

    b, L = 2, 5
    x = torch.randn(b, 4, 16, 16)
    t = torch.tensor([999.0, 123.0])
    text = 2.0 * torch.randn(b, L, cfg.d_text)
    mask = torch.zeros(b, L, dtype=torch.bool)
    mask[1, 3:] = True
    text[1, 3:] = 50.0 * torch.randn(2, cfg.d_text)  # junk under the padding
    P.CrossAttention.use_sdpa = False  # burn's exact ops
    with torch.no_grad():
        out = model(x, t, text, mask)
    with torch.no_grad():  # the same model in f64: how far f32 rounding alone moves the output
        out64 = model.double()(x.double(), t, text.double(), mask).float()
        model.float()
    print(f"torch f32 vs f64 max abs diff: {(out - out64).abs().max().item():.3e}; |out| max {out.abs().max().item():.3f}")

    w = P.to_burn(model)
    bank, bank_meta = P.retrieval_bank([text[0], text[1, :3]], torch.randn(2, 4 * 16 * 16), ["alpha", "beta é"])
    tensors = {k: v.half() for k, v in w.items()}
    tensors.update({k: v.half() for k, v in bank.items()})
    tensors.update({
        "golden.x": x, "golden.t": t, "golden.text": text, "golden.mask": mask.float(), "golden.out": out,
    })
    meta = {"config": cfg.to_json(), "prediction": "v", "schedule": "cosine-1000", "format": "pmg"}
    meta.update(bank_meta)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT, metadata=meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, {P.num_params(model)} parameters)")


def check(denoiser: str, out: str) -> None:
    """Inputs + the mirror's output for the weights in `denoiser` (a burn-format export)."""
    torch.manual_seed(7)
    model, meta, _ = P.load_denoiser(denoiser)
    cfg = model.cfg
    b, L = 2, 7
    x = torch.randn(b, cfg.latent_channels, 16, 16)
    t = torch.tensor([999.0, 321.0])
    text = 2.0 * torch.randn(b, L, cfg.d_text)
    mask = torch.zeros(b, L, dtype=torch.bool)
    mask[1, 4:] = True
    P.CrossAttention.use_sdpa = False
    with torch.no_grad():
        y = model.eval()(x, t, text, mask)
    from safetensors.torch import save_file

    save_file({"golden.x": x, "golden.t": t, "golden.text": text, "golden.mask": mask.float(), "golden.out": y}, out)
    print(f"wrote {out} (|out| max {y.abs().max().item():.3f})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    else:
        main()
