"""GGUF SD checkpoints of the real shapes (random weights) and diffusers' outputs on them: the
name mapping and config inference of `pmg::sd::gguf_checkpoint` checked on SD-Turbo's and
BK-SDM-Tiny's published configs (4 levels, 1280 wide, 64-wide heads, no mid block, ...), which the
tiny golden fixtures cannot have. Not a CI test (2.5 GB of files, minutes of CPU):

    PY=... python scripts/check_sd_gguf_real.py DIR     # torch, diffusers 0.42.1, transformers, gguf
    PMG_SD_GGUF_REAL=DIR cargo test --release -p pmg --test sd_gguf -- --ignored --nocapture

DIR/sd-turbo-q8_0.gguf: SD-Turbo (SD 2.1's UNet and KL VAE, OpenCLIP-H text tower with its 24th
layer, which SD 2.x does not use) under the original LDM/OpenCLIP names, Q8_0 as stable-diffusion.cpp
quantizes. DIR/bk-sdm-tiny-q4_0.gguf: BK-SDM-Tiny under diffusers' names with sd.cpp's `unet.`,
`vae.`, `te.` prefixes (what `sd-cli -M convert` writes from a diffusers folder), Q4_0.
DIR/reference.json has the schema of crates/pmg/tests/golden/sd-gguf/reference.json.
"""

import json
import pathlib
import shutil
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_sd import MODELS, SD_VAE  # noqa: E402
from golden_sd_gguf import (  # noqa: E402
    PROMPT, Q, VOCAB, check_with_diffusers, flat, ldm_unet, ldm_vae, openclip, quantize_all, write_gguf,
)


def text_model(cfg, layers):
    return CLIPTextModel(CLIPTextConfig(vocab_size=429, max_position_embeddings=77,
                                        **{**cfg, "num_hidden_layers": layers})).eval()


def reference(u, v, t, pad, name, family):
    tok = CLIPTokenizer(str(VOCAB / "vocab.json"), str(VOCAB / "merges.txt"), pad_token=pad, model_max_length=77)
    ids = tok(PROMPT, padding="max_length", max_length=77).input_ids
    g = torch.Generator().manual_seed(7)
    latent = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        states = t(torch.tensor([ids])).last_hidden_state
        out = u(latent, torch.tensor([500.0]), encoder_hidden_states=states).sample
        image = v.decode(latent / 0.18215).sample
    return {"file": name, "family": family, "prompt_ids": ids, "states": flat(states), "latent": flat(latent),
            "timestep": 500, "unet_out": flat(out), "decoded": flat(image), "image": None}


def sd_turbo(out):
    m = MODELS["sd-turbo"]
    torch.manual_seed(0)
    u, v = UNet2DConditionModel(**m["unet"]).eval(), AutoencoderKL(**SD_VAE).eval()
    t = text_model(m["text"], 24)
    ldm = {**ldm_unet(u.state_dict(), [bt == "CrossAttnUpBlock2D" for bt in u.config.up_block_types]),
           **ldm_vae(v.state_dict(), 4)}
    check_with_diffusers(ldm, u, v)
    ldm.update(openclip(t.state_dict()))
    tensors, stored = quantize_all(ldm, Q.Q8_0, lambda n: Q.F16)
    write_gguf(out / "sd-turbo-q8_0.gguf", tensors)
    del tensors
    from diffusers.loaders import single_file_utils as sfu
    u.load_state_dict(sfu.convert_ldm_unet_checkpoint(stored, dict(u.config)))
    vs = sfu.convert_ldm_vae_checkpoint(stored, dict(v.config))
    v.load_state_dict({k: w.reshape(v.state_dict()[k].shape) for k, w in vs.items()})
    # SD 2.x conditions on OpenCLIP's penultimate layer: transformers' tower of 23 layers.
    t23 = text_model(m["text"], 23)
    pre = "cond_stage_model.model."
    sd, d = {}, m["text"]["hidden_size"]
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in range(23):
        r = f"{pre}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            fused = stored[f"{r}attn.in_proj_{kind}"]
            for j, x in enumerate("qkv"):
                sd[f"encoder.layers.{i}.self_attn.{x}_proj.{kind}"] = fused[j * d:(j + 1) * d]
            for oc, hf in names.items():
                sd[f"encoder.layers.{i}.{hf}.{kind}"] = stored[f"{r}{oc}.{kind}"]
    sd["embeddings.token_embedding.weight"] = stored[pre + "token_embedding.weight"]
    sd["embeddings.position_embedding.weight"] = stored[pre + "positional_embedding"]
    sd["final_layer_norm.weight"] = stored[pre + "ln_final.weight"]
    sd["final_layer_norm.bias"] = stored[pre + "ln_final.bias"]
    t23.load_state_dict(sd)
    return reference(u, v, t23, "!", "sd-turbo-q8_0.gguf", "sd2")


def bk_sdm_tiny(out):
    m = MODELS["bk-sdm-tiny"]
    torch.manual_seed(1)
    u, v = UNet2DConditionModel(**m["unet"]).eval(), AutoencoderKL(**SD_VAE).eval()
    t = text_model(m["text"], m["text"]["num_hidden_layers"])
    named = {**{"unet." + k: w for k, w in u.state_dict().items()},
             **{"vae." + k: w for k, w in v.state_dict().items()},
             **{"te.text_model." + k: w for k, w in t.state_dict().items()}}
    tensors, stored = quantize_all(named, Q.Q4_0, lambda n: Q.F16)
    write_gguf(out / "bk-sdm-tiny-q4_0.gguf", tensors)
    del tensors
    u.load_state_dict({k[5:]: w for k, w in stored.items() if k.startswith("unet.")})
    v.load_state_dict({k[4:]: w for k, w in stored.items() if k.startswith("vae.")})
    t.load_state_dict({k[len("te.text_model."):]: w for k, w in stored.items() if k.startswith("te.")})
    return reference(u, v, t, "<|endoftext|>", "bk-sdm-tiny-q4_0.gguf", "sd1")


def main():
    out = pathlib.Path(sys.argv[1])
    (out / "tokenizer").mkdir(parents=True, exist_ok=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(VOCAB / f, out / "tokenizer" / f)
    models = [sd_turbo(out), bk_sdm_tiny(out)]
    (out / "reference.json").write_text(json.dumps({"prompt": PROMPT, "models": models}) + "\n")
    for p in sorted(out.glob("*")):
        print(p.name, p.stat().st_size)


if __name__ == "__main__":
    main()
