"""Reference values for pmg's diffusers-compatible schedulers (issue 21): timesteps, sigmas and whole
4-step runs of diffusers' DDIM, Euler, Euler ancestral, DPM-Solver++ 2M and LCM schedulers on the
scheduler configs of the SD family, written to crates/pmg/tests/golden/schedulers.json.

The "model" is a fixed elementwise function of the scaled input and the timestep, so a run checks
the schedulers alone: timestep spacing, sigmas, input scaling, the update, and where the ancestral
and LCM samplers add noise (the noise is injected from a recorded list instead of torch's RNG).

    /var/cache/pmg/torch-venv/bin/python scripts/golden_schedulers.py   # diffusers 0.42.1, torch
"""

import json
import math
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
)
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module
import diffusers.schedulers.scheduling_lcm as lcm_module

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/pmg/tests/golden/schedulers.json"

# scheduler_config.json as the SD family ships it (the keys a scheduler does not know are ignored).
SD = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}
CONFIGS = {
    "sd15": SD,  # SD 1.x, BK-SDM, segmind small/tiny-sd
    "sd21-v": {**SD, "prediction_type": "v_prediction"},  # SD 2.x 768
    "sd-turbo": {**SD, "timestep_spacing": "trailing"},  # SD-Turbo (EulerDiscreteScheduler)
}
SCHEDULERS = {
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler,
    "dpm++2m": DPMSolverMultistepScheduler,
    "lcm": LCMScheduler,
}
STEPS = [1, 2, 4, 20]
SHAPE = (1, 4, 2, 2)


def fake_model(x, t):
    return 0.3 * x + 0.05 * math.sin(0.01 * float(t))


def run(cls, config, steps, noise_rng):
    s = cls.from_config(config)
    s.set_timesteps(steps)
    injected = []

    def randn(shape, **_):
        n = torch.from_numpy(noise_rng.standard_normal(size=tuple(shape)).astype(np.float32))
        injected.append(n.flatten().tolist())
        return n

    euler_a_module.randn_tensor = randn
    lcm_module.randn_tensor = randn
    init = torch.from_numpy(np.random.RandomState(0).standard_normal(size=SHAPE).astype(np.float32))
    x = init * s.init_noise_sigma
    for t in s.timesteps:
        out = fake_model(s.scale_model_input(x, t), t)
        x = s.step(out, t, x).prev_sample
    sigmas = getattr(s, "sigmas", None)
    return {
        "timesteps": [float(t) for t in s.timesteps],
        "sigmas": None if sigmas is None else [float(v) for v in sigmas],
        "init_noise_sigma": float(s.init_noise_sigma),
        "initial": init.flatten().tolist(),
        "noise": injected,
        "final": x.flatten().tolist(),
    }


def main():
    cases = []
    for cname, config in CONFIGS.items():
        for sname, cls in SCHEDULERS.items():
            for steps in STEPS:
                r = run(cls, config, steps, np.random.RandomState(1))
                cases.append({"config": cname, "scheduler": sname, "steps": steps, **r})
    doc = {
        "source": f"scripts/golden_schedulers.py, diffusers {diffusers.__version__}, torch {torch.__version__}",
        "model": "out = 0.3 * scale_model_input(x, t) + 0.05 * sin(0.01 t)",
        "configs": CONFIGS,
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
