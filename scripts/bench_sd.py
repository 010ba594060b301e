"""Stable Diffusion checkpoints of the real shapes with random weights, and diffusers' timings on
them: the peer side of `scripts/bench-sd.sh` (issue 21, deliver 6). No real SD weights are
reachable from these machines; speed and memory depend on the shapes only.

    PY=/var/cache/pmg/torch-venv/bin/python   # diffusers 0.42.1, transformers 5.25, torch
    $PY scripts/bench_sd.py make DIR          # DIR/{sd-turbo,bk-sdm-tiny,taesd}, f16 safetensors
    $PY scripts/bench_sd.py time DIR/sd-turbo VAE SIZE BATCH RUNS   # one JSON line (VAE: a folder or -)

`make` writes diffusers folders with the published configs (SD-Turbo: SD 2.1's UNet, OpenCLIP-H
text encoder and KL VAE, Euler with trailing timesteps; BK-SDM-Tiny: SD 1.4's without the mid
block, the innermost stage and a layer per stage, CLIP-L text encoder; TAESD: AutoencoderTiny's
defaults) and the tiny checkpoint's tokenizer (the vocabulary does not change any cost). `time`
loads the folder in f32 (VAE: an autoencoder folder replacing vae/, TAESD's) and prints what
`pmg bench-sd` prints for the same shapes.
"""

import json
import os
import pathlib
import resource
import shutil
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "crates/pmg/tests/golden/sd-tiny/tokenizer"

SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}

SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)

MODELS = {
    "sd-turbo": dict(
        unet=dict(
            sample_size=64,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            attention_head_dim=(5, 10, 20, 20),
            cross_attention_dim=1024,
            use_linear_projection=True,
        ),
        text=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=23,
            num_attention_heads=16,
            hidden_act="gelu",
            projection_dim=512,
        ),
    ),
    "bk-sdm-tiny": dict(
        unet=dict(
            sample_size=64,
            block_out_channels=(320, 640, 1280),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D",) * 3,
            up_block_types=("CrossAttnUpBlock2D",) * 3,
            mid_block_type=None,
            attention_head_dim=8,
            cross_attention_dim=768,
        ),
        text=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            hidden_act="quick_gelu",
            projection_dim=768,
        ),
    ),
}


def save(model, path):
    model.to(torch.float16).save_pretrained(path, safe_serialization=True)


def make(out):
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    for name, m in MODELS.items():
        d = out / name
        if (d / "unet/diffusion_pytorch_model.safetensors").exists():
            continue
        unet = UNet2DConditionModel(**m["unet"])
        print(f"{name}: UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M parameters", file=sys.stderr)
        save(unet, d / "unet")
        del unet
        text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **m["text"]))
        print(f"{name}: text encoder {sum(p.numel() for p in text.parameters()) / 1e6:.1f} M", file=sys.stderr)
        save(text, d / "text_encoder")
        del text
        vae = AutoencoderKL(**SD_VAE)
        print(f"{name}: VAE {sum(p.numel() for p in vae.parameters()) / 1e6:.1f} M", file=sys.stderr)
        save(vae, d / "vae")
        (d / "scheduler").mkdir(parents=True, exist_ok=True)
        (d / "scheduler/scheduler_config.json").write_text(json.dumps(SCHEDULER, indent=2))
        shutil.copytree(TOKENIZER, d / "tokenizer", dirs_exist_ok=True)
    if not (out / "taesd/diffusion_pytorch_model.safetensors").exists():
        save(AutoencoderTiny(), out / "taesd")


def load(folder, vae):
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextModel

    f32 = dict(torch_dtype=torch.float32)
    text = CLIPTextModel.from_pretrained(folder / "text_encoder", **f32).eval()
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", **f32).eval()
    vae = vae or folder / "vae"
    cls = json.loads((vae / "config.json").read_text())["_class_name"]
    vae = (AutoencoderTiny if cls == "AutoencoderTiny" else AutoencoderKL).from_pretrained(vae, **f32).eval()
    return text, unet, vae


def time_parts(folder, vae, size, batch, runs):
    """What `pmg bench-sd` measures, on the same shapes: load, the text encoder on 77 tokens, one
    UNet call on `batch` latents of size/8, one decode of one latent; medians after a warm-up."""
    torch.set_num_threads(os.cpu_count())
    t0 = time.perf_counter()
    text, unet, vae = load(folder, vae)
    load_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    lat = size // 8
    ids = torch.randint(0, 1000, (1, 77), generator=g)
    x = torch.randn(batch, 4, lat, lat, generator=g)
    ctx = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    t = torch.full((batch,), 999.0)
    z = torch.randn(1, 4, lat, lat, generator=g)
    calls = {
        "text_ms": lambda: text(ids),
        "unet_ms": lambda: unet(x, t, encoder_hidden_states=ctx),
        "decode_ms": lambda: vae.decode(z),
    }
    out = {
        "system": f"diffusers {__import__('diffusers').__version__}, torch {torch.__version__} CPU, "
        f"{torch.get_num_threads()} threads",
        "load_s": load_s,
    }
    with torch.inference_mode():
        for key, call in calls.items():
            times = []
            for i in range(runs + 1):
                t0 = time.perf_counter()
                call()
                if i:
                    times.append(time.perf_counter() - t0)
            out[key] = 1000 * sorted(times)[len(times) // 2]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(pathlib.Path(sys.argv[2]))
    else:
        folder, vae, size, batch, runs = sys.argv[2:7]
        vae = pathlib.Path(vae) if vae != "-" else None
        time_parts(pathlib.Path(folder), vae, int(size), int(batch), int(runs))
