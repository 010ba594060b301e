"""A whole tiny Stable Diffusion checkpoint in diffusers' folder layout (tokenizer, CLIP text encoder,
UNet, AutoencoderKL, scheduler; diffusers' own test sizes, random weights) and what diffusers'
StableDiffusionPipeline draws with it, written to crates/pmg/tests/golden/sd-tiny/ (issue 21,
deliver 4 and 5). The folder is also what the CLI and browser tests point pmg at.

The initial latents and the ancestral sampler's noise are drawn from pmg's own generator (SplitMix64
with Box-Muller, crates/pmg/src/rng.rs, ported below), so a seed means the same image in both.

    /var/cache/pmg/torch-venv/bin/python scripts/golden_sd_pipeline.py   # diffusers 0.42.1, torch
"""

import json
import math
import pathlib
import shutil

import numpy as np
import torch
import diffusers
import transformers
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as img2img_module
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module
from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/pmg/tests/golden/sd-tiny"
VOCAB = ROOT / "crates/pmg/tests/golden/clip-tokenizer"
MASK = (1 << 64) - 1
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}
PROMPT = "a photo of a cat wearing a tiny hat"
SIZE = 64  # the checkpoint's own size: the UNet's sample_size (32) times the VAE's factor (2)
CASES = [
    {"name": "euler-ancestral-cfg", "sampler": "euler-ancestral", "steps": 4, "guidance": 3.0, "seed": 3},
    {"name": "ddim-no-guidance", "sampler": "ddim", "steps": 2, "guidance": 0.0, "seed": 11},
    {"name": "ddim-cfg", "sampler": "ddim", "steps": 3, "guidance": 5.0, "seed": 12},
    {"name": "euler-ancestral", "sampler": "euler-ancestral", "steps": 3, "guidance": 1.0, "seed": 13},
    # img2img from start.png (the UNet's latents from the VAE's posterior mean).
    {"name": "img2img-ddim", "sampler": "ddim", "steps": 4, "guidance": 3.0, "seed": 21, "strength": 0.5},
    {"name": "img2img-euler-ancestral", "sampler": "euler-ancestral", "steps": 5, "guidance": 1.0, "seed": 22, "strength": 0.7},
    {"name": "img2img-dpm", "sampler": "dpm-solver2m", "steps": 4, "guidance": 1.0, "seed": 23, "strength": 0.6},
]


class SeededRng:
    """pmg::rng::SeededRng."""

    def __init__(self, seed):
        self.state = (seed ^ 0x005EED0F93A11CE5) & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        return ((self.next_u64() >> 11) + 1) / float(1 << 53)

    def normals(self, n):
        out = []
        while len(out) < n:
            u1, u2 = self.uniform(), self.uniform()
            r = math.sqrt(-2.0 * math.log(u1))
            th = 2.0 * math.pi * u2
            out += [r * math.cos(th), r * math.sin(th)]
        return np.array(out[:n], dtype=np.float32)


def randomise_norms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)


def build():
    tokenizer = CLIPTokenizer(str(VOCAB / "vocab.json"), str(VOCAB / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    ).eval()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    ).eval()
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    ).eval()
    for m in (text_encoder, unet, vae):
        randomise_norms(m)
    # The UNet and VAE are stored in float16 (as SD checkpoints usually are) and run in float32
    # from the rounded weights.
    unet = unet.half().float()
    vae = vae.half().float()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler.from_config(SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if OUT.exists():
        shutil.rmtree(OUT)
    pipe.save_pretrained(OUT, safe_serialization=True)
    for part in ("unet", "vae"):
        getattr(pipe, part).half().save_pretrained(OUT / part, safe_serialization=True)
        getattr(pipe, part).float()
    return pipe


def start_picture():
    """An opaque SIZE x SIZE picture (stripes and a disc), saved as start.png."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    disc = (x - SIZE // 2) ** 2 + (y - SIZE // 2 + 2) ** 2 < (SIZE // 4) ** 2
    rgb = np.stack([(x * 4) % 256, (y * 3 + 40) % 256, np.where(disc, 230, 30)], -1)
    img = Image.fromarray(rgb.astype(np.uint8), "RGB")
    img.save(OUT / "start.png")
    return img


def u8_hex(image):
    """[h, w, 3] in [0, 1] as diffusers' own 8-bit output (numpy_to_pil), channel-major, hex."""
    return np.transpose((image * 255).round().astype(np.uint8), (2, 0, 1)).tobytes().hex()


def run(pipe, case, saved):
    cls = {
        "ddim": DDIMScheduler,
        "euler-ancestral": EulerAncestralDiscreteScheduler,
        "dpm-solver2m": DPMSolverMultistepScheduler,
    }[case["sampler"]]
    # As diffusers users switch samplers: from the checkpoint's scheduler config.
    pipe.scheduler = cls.from_config(saved)
    rng = SeededRng(case["seed"])
    latent = SIZE // pipe.vae_scale_factor
    initial = torch.from_numpy(rng.normals(4 * latent * latent)).reshape(1, 4, latent, latent)

    def draw(shape, **_):
        return torch.from_numpy(rng.normals(int(np.prod(shape)))).reshape(shape)

    euler_a_module.randn_tensor = draw
    if "strength" in case:
        # pmg starts from the posterior's mean, and draws the start noise from its own generator.
        img2img_module.retrieve_latents = lambda out, generator=None, sample_mode="sample": out.latent_dist.mode()
        img2img_module.randn_tensor = lambda shape, **_: torch.from_numpy(initial.flatten().numpy()).reshape(shape)
        i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
        with torch.no_grad():
            image = i2i(
                PROMPT,
                image=start_picture(),
                strength=case["strength"],
                num_inference_steps=case["steps"],
                guidance_scale=case["guidance"],
                output_type="np",
            ).images[0]
        return {**case, "rgb_hex": u8_hex(image)}
    with torch.no_grad():
        image = pipe(
            PROMPT,
            height=SIZE,
            width=SIZE,
            num_inference_steps=case["steps"],
            guidance_scale=case["guidance"],
            latents=initial,
            output_type="np",
        ).images[0]
    # [h, w, 3] in [0, 1] -> channel-major.
    return {**case, "rgb_hex": u8_hex(image)}


def main():
    pipe = build()
    # The scheduler config as a checkpoint ships it (the file, where every key is explicit: the
    # in-memory config would let a new class replace the saved class's defaults with its own).
    saved = DDIMScheduler.load_config(OUT / "scheduler")
    tokenizer = pipe.tokenizer
    ids = tokenizer(PROMPT, padding="max_length", max_length=77).input_ids
    ref = {
        "source": f"scripts/golden_sd_pipeline.py, diffusers {diffusers.__version__}, "
        f"transformers {transformers.__version__}, torch {torch.__version__}",
        "prompt": PROMPT,
        "size": SIZE,
        "prompt_ids": ids,
        "cases": [run(pipe, c, saved) for c in CASES],
    }
    (OUT / "reference.json").write_text(json.dumps(ref) + "\n")
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(p.relative_to(OUT), p.stat().st_size)


if __name__ == "__main__":
    main()
