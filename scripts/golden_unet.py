"""Tiny random UNet2DConditionModels of diffusers' own test sizes, saved as checkpoint folders (config.json
+ diffusion_pytorch_model.safetensors, float16) with reference outputs, written to
crates/pmg/tests/golden/unet/{variant}/ (issue 21, deliver 1 and 4):

- sd1: the SD 1.x layout of diffusers' StableDiffusionPipeline tests (blocks (32, 64), 2 layers per block,
  cross-attention 32, 8 heads, convolutional projections), epsilon prediction;
- sd2: the SD 2.x layout of diffusers' StableDiffusion2 tests (heads (2, 4), linear projections);
- bk: BK-SDM's layout (no mid block, one layer per block, attention in every block).

reference.json holds one UNet call (a batch of two latents at two float timesteps, each with its own
text states) and, for sd1, a whole 4-step sample per scheduler with the noise diffusers drew recorded.
The references are computed in float32 from the float16-rounded weights that are saved.

    /var/cache/pmg/torch-venv/bin/python scripts/golden_unet.py   # diffusers 0.42.1, torch
"""

import json
import pathlib

import numpy as np
import torch
import diffusers
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    UNet2DConditionModel,
)
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module
import diffusers.schedulers.scheduling_lcm as lcm_module

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/pmg/tests/golden/unet"

COMMON = dict(sample_size=32, in_channels=4, out_channels=4, cross_attention_dim=32)
VARIANTS = {
    "sd1": dict(
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
    ),
    "sd2": dict(
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
    ),
    "bk": dict(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
        mid_block_type=None,
    ),
}
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}
SCHEDULERS = {
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler,
    "dpm++2m": DPMSolverMultistepScheduler,
    "lcm": LCMScheduler,
}


def randn(rng, *shape):
    return torch.from_numpy(rng.standard_normal(size=shape).astype(np.float32))


def flat(t):
    return t.detach().flatten().tolist()


def build(variant):
    torch.manual_seed(0)
    model = UNet2DConditionModel(**COMMON, **VARIANTS[variant]).eval()
    with torch.no_grad():
        # Norms start as identities; random affines make a missed norm weight visible.
        for m in model.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    d = OUT / variant
    model.half().save_pretrained(d, safe_serialization=True)
    return model.float(), d


def sample(model, cls, ctx, rng):
    s = cls.from_config(SCHEDULER_CONFIG)
    s.set_timesteps(4)
    injected = []

    def draw(shape, **_):
        n = randn(rng, *shape)
        injected.append(flat(n))
        return n

    euler_a_module.randn_tensor = draw
    lcm_module.randn_tensor = draw
    init = randn(np.random.RandomState(5), 1, 4, 8, 8)
    x = init * s.init_noise_sigma
    for t in s.timesteps:
        eps = model(s.scale_model_input(x, t), t, encoder_hidden_states=ctx).sample
        x = s.step(eps, t, x).prev_sample
    return {"timesteps": [float(t) for t in s.timesteps], "initial": flat(init), "noise": injected, "final": flat(x)}


def main():
    for variant in VARIANTS:
        model, d = build(variant)
        rng = np.random.RandomState(1)
        x, ctx = randn(rng, 2, 4, 16, 16), randn(rng, 2, 7, 32)
        t = torch.tensor([999.0, 10.5])
        with torch.no_grad():
            out = model(x, t, encoder_hidden_states=ctx).sample
            ref = {
                "source": f"scripts/golden_unet.py, diffusers {diffusers.__version__}, torch {torch.__version__}",
                "sample": flat(x),
                "timesteps": flat(t),
                "encoder_hidden_states": flat(ctx),
                "out": flat(out),
            }
            if variant == "sd1":
                ref["scheduler_config"] = SCHEDULER_CONFIG
                ref["runs"] = {
                    name: sample(model, cls, ctx[:1], np.random.RandomState(2)) for name, cls in SCHEDULERS.items()
                }
        (d / "reference.json").write_text(json.dumps(ref) + "\n")
        print(d, {p.name: p.stat().st_size for p in d.iterdir()})


if __name__ == "__main__":
    main()
