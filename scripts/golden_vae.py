"""Tiny random diffusers autoencoders saved as checkpoint folders (config.json +
diffusion_pytorch_model.safetensors) with their decoder and encoder outputs, written to
crates/pmg/tests/golden/vae-kl/ and crates/pmg/tests/golden/taesd/ (issue 21).

- AutoencoderKL at diffusers' test widths (blocks 32, 64), but with 2 resnets per block (SD's value)
  and 8 norm groups, so that loops and multi-channel groups are exercised; stored as f16 (as most
  released VAEs are) to stay under 3 MB, the references computed from the f16-rounded weights.
- AutoencoderTiny (TAESD) 32 wide with three stages (two up/downsamplings) and several blocks per
  stage (the real TAESD is 64 wide, (1, 3, 3, 3) / (3, 3, 3, 1)).

The references follow the contract of pmg's Rust API, the one SD pipelines use: `decode` takes the
UNet's latents and undoes the scaling (`z / scaling_factor + shift_factor`, or SDXL's per-channel
`z * latents_std / scaling_factor + latents_mean`); `encode` returns the posterior mean scaled back
(`(mean - shift_factor) * scaling_factor`). Norm affines are re-randomised so identity norms fail.
Shapes are not square (h != w) so that swapped axes fail too.

    /var/cache/pmg/torch-venv/bin/python scripts/golden_vae.py
"""

import json
import pathlib

import diffusers
import torch
from diffusers import AutoencoderKL, AutoencoderTiny

ROOT = pathlib.Path(__file__).resolve().parent.parent / "crates/pmg/tests/golden"
LATENTS = (2, 4, 6, 8)
IMAGE = (2, 3, 16, 24)


def source():
    return f"scripts/golden_vae.py, diffusers {diffusers.__version__}, torch {torch.__version__}"


def flat(t):
    return t.detach().flatten().tolist()


def inputs():
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(LATENTS, generator=g)
    image = torch.rand(IMAGE, generator=g) * 2 - 1
    return latents, image


def save(model, name, half=False):
    """Saves `model` (as f16 with `half`, then computing with the f16-rounded weights)."""
    out = ROOT / name
    if half:
        model.half()
    model.save_pretrained(out, safe_serialization=True)
    model.float()
    size = (out / "diffusion_pytorch_model.safetensors").stat().st_size
    assert size < 3_000_000, f"{name}: {size} bytes"
    return out


def kl():
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        block_out_channels=[32, 64],
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=8,
        scaling_factor=0.18215,
    ).eval()
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    out = save(vae, "vae-kl", half=True)
    latents, image = inputs()
    sf = vae.config.scaling_factor
    # SDXL-style per-channel statistics, the same weights: the pipeline's formula.
    lmean, lstd = [0.1, -0.2, 0.3, 0.05], [0.9, 1.1, 0.8, 1.2]
    m4, s4 = torch.tensor(lmean).view(1, 4, 1, 1), torch.tensor(lstd).view(1, 4, 1, 1)
    with torch.no_grad():
        decoded = vae.decode(latents / sf).sample
        decoded_stats = vae.decode(latents * s4 / sf + m4).sample
        dist = vae.encode(image).latent_dist
    ref = {
        "source": source(),
        "latents_shape": list(LATENTS),
        "latents": flat(latents),
        "decoded": flat(decoded),
        "image_shape": list(IMAGE),
        "image": flat(image),
        "mean": flat(dist.mean),
        "logvar": flat(dist.logvar),
        "encoded": flat(dist.mean * sf),
        "latents_mean": lmean,
        "latents_std": lstd,
        "decoded_with_latents_stats": flat(decoded_stats),
        "encoded_with_latents_stats": flat((dist.mean - m4) * sf / s4),
    }
    (out / "reference.json").write_text(json.dumps(ref) + "\n")
    print(out, sorted(p.name for p in out.iterdir()), "decoded std", decoded.std().item())


def tiny():
    torch.manual_seed(0)
    vae = AutoencoderTiny(
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=[32, 32, 32],
        decoder_block_out_channels=[32, 32, 32],
        num_encoder_blocks=[1, 2, 2],
        num_decoder_blocks=[2, 2, 1],
        latent_channels=4,
    ).eval()
    # torch's default init shrinks the signal through the ReLU stack (outputs near constant); weights
    # of std 1/sqrt(fan_in) keep it near unit scale, so the comparison's tolerance means something.
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (1.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
    out = save(vae, "taesd")
    latents, image = inputs()
    sf, shift = vae.config.scaling_factor, vae.config.shift_factor
    with torch.no_grad():
        decoded = vae.decode(latents / sf + shift).sample
        raw = vae.encode(image).latents
    ref = {
        "source": source(),
        "latents_shape": list(LATENTS),
        "latents": flat(latents),
        "decoded": flat(decoded),
        "image_shape": list(IMAGE),
        "image": flat(image),
        "encoded": flat((raw - shift) * sf),
    }
    (out / "reference.json").write_text(json.dumps(ref) + "\n")
    print(out, sorted(p.name for p in out.iterdir()), "decoded std", decoded.std().item(), "encoded std", raw.std().item())


if __name__ == "__main__":
    kl()
    tiny()
