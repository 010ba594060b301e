"""Tiny one-file GGUF Stable Diffusion checkpoints as stable-diffusion.cpp's `sd-cli -M convert`
writes them, and what diffusers/transformers compute with the same weights, written to
crates/pmg/tests/golden/sd-gguf/ (issue 21, deliver 2).

Two random-weight models of SD's two families at diffusers' test sizes, each a GGUF with no
metadata and the original (CompVis/LDM) tensor names:
  sd1-q8_0.gguf  SD 1.x: 1x1-conv transformer projections, 8 heads per block, OpenAI CLIP text
                 tower (quick GELU) under transformers' names; f16 source, Q8_0 linears.
  sd2-q4_0.gguf  SD 2.x: linear projections, 64-wide heads, OpenCLIP text tower (GELU, fused
                 q/k/v `in_proj`, conditioning on its penultimate layer, prompts padded with `!`);
                 f16 UNet, f32 text tower, Q4_0 linears, no autoencoder (given apart).
Which tensors are quantized follows sd.cpp's `ModelLoader::tensor_should_be_converted`: rows of
whole blocks, not biases, not the time embedding, not embeddings. Quantization is gguf-py's
(`gguf.quants`), independent of pmg's; the references run on the dequantized weights.

The LDM names are written by the mapping of diffusers' scripts/convert_diffusers_to_original_
stable_diffusion.py (re-implemented below for any number of levels) and checked here by diffusers'
own LDM -> diffusers conversion (`single_file_utils.convert_ldm_*_checkpoint`) giving every
tensor back.

    PY=... python scripts/golden_sd_gguf.py   # torch, diffusers 0.42.1, transformers 5.25, gguf 0.19
"""

import json
import pathlib
import shutil
import struct

import numpy as np
import torch
import diffusers
import gguf
import transformers
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from diffusers import DDIMScheduler, StableDiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from golden_sd_pipeline import SCHEDULER, SeededRng, randomise_norms, u8_hex

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/pmg/tests/golden/sd-gguf"
VOCAB = ROOT / "crates/pmg/tests/golden/clip-tokenizer"
PROMPT = "a photo of a cat wearing a tiny hat"
Q = gguf.GGMLQuantizationType
DRAW = {"sampler": "ddim", "steps": 2, "guidance": 0.0, "seed": 5}


def unet(linear):
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        # SD 1.x: 8 heads per block (diffusers' naming slip); SD 2.x: 64-wide heads, at most.
        attention_head_dim=(1, 1) if linear else 8,
        use_linear_projection=linear,
    ).eval()


def vae():
    return AutoencoderKL(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        layers_per_block=1,
    ).eval()


def text(tokenizer, layers, act):
    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=64,
            intermediate_size=96,
            num_attention_heads=1,
            num_hidden_layers=layers,
            hidden_act=act,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    ).eval()


# ---- diffusers -> LDM names (convert_diffusers_to_original_stable_diffusion.py) ----

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
          ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def ldm_resnet(rest):
    for hf, sd in RESNET:
        if rest.startswith(hf + "."):
            return sd + rest[len(hf):]
    return rest


def ldm_unet(sd, attention_up):
    out = {}
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for k, v in sd.items():
        p = k.split(".")
        head = next((h for h in fixed if k.startswith(h + ".")), None)
        if head:
            n = fixed[head] + k[len(head):]
        elif p[0] == "down_blocks":
            i, kind = int(p[1]), p[2]
            if kind == "downsamplers":
                n = f"input_blocks.{3 * (i + 1)}.0.op." + ".".join(p[5:])
            else:
                j, rest = int(p[3]), ".".join(p[4:])
                n = f"input_blocks.{3 * i + j + 1}." + ("0." + ldm_resnet(rest) if kind == "resnets" else "1." + rest)
        elif p[0] == "up_blocks":
            i, kind = int(p[1]), p[2]
            if kind == "upsamplers":
                n = f"output_blocks.{3 * i + 2}.{2 if attention_up[i] else 1}.conv." + ".".join(p[5:])
            else:
                j, rest = int(p[3]), ".".join(p[4:])
                n = f"output_blocks.{3 * i + j}." + ("0." + ldm_resnet(rest) if kind == "resnets" else "1." + rest)
        elif p[0] == "mid_block":
            kind, j, rest = p[1], int(p[2]), ".".join(p[3:])
            n = f"middle_block.{2 * j}.{ldm_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
        else:
            raise KeyError(k)
        out["model.diffusion_model." + n] = v
    return out


def ldm_vae(sd, levels):
    out = {}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for k, v in sd.items():
        p = k.split(".")
        side = p[0]
        if side in ("quant_conv", "post_quant_conv"):
            n = k
        elif p[1] == "down_blocks":
            i = int(p[2])
            if p[3] == "downsamplers":
                n = f"{side}.down.{i}.downsample." + ".".join(p[5:])
            else:
                n = f"{side}.down.{i}.block.{p[4]}." + ".".join(p[5:])
        elif p[1] == "up_blocks":
            i = levels - 1 - int(p[2])
            if p[3] == "upsamplers":
                n = f"{side}.up.{i}.upsample." + ".".join(p[5:])
            else:
                n = f"{side}.up.{i}.block.{p[4]}." + ".".join(p[5:])
        elif p[1] == "mid_block":
            if p[2] == "resnets":
                n = f"{side}.mid.block_{int(p[3]) + 1}." + ".".join(p[4:])
            else:
                rest = ".".join(p[4:])
                for hf, ld in attn.items():
                    if rest.startswith(hf + "."):
                        rest = ld + rest[len(hf):]
                n = f"{side}.mid.attn_1.{rest}"
                if v.ndim == 2:
                    v = v[:, :, None, None]  # LDM's attention is 1x1 convolutions
        elif p[1] == "conv_norm_out":
            n = f"{side}.norm_out." + ".".join(p[2:])
        else:
            n = k
        out["first_stage_model." + n.replace("conv_shortcut", "nin_shortcut")] = v
    return out


def openclip(sd):
    """transformers' CLIPTextModel state dict in OpenCLIP's names (SD 2.x's checkpoints)."""
    out = {}
    top = {"embeddings.token_embedding.weight": "token_embedding.weight",
           "embeddings.position_embedding.weight": "positional_embedding",
           "final_layer_norm.weight": "ln_final.weight",
           "final_layer_norm.bias": "ln_final.bias"}
    layer = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for k, v in sd.items():
        if k in top:
            out[top[k]] = v
            continue
        p = k.split(".")
        i, rest = int(p[2]), ".".join(p[3:])
        if rest.startswith("self_attn.q_proj."):
            kind = p[-1]
            fused = torch.cat([sd[f"encoder.layers.{i}.self_attn.{x}_proj.{kind}"] for x in "qkv"])
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = fused
            continue
        if rest.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
            continue
        for hf, oc in layer.items():
            if rest.startswith(hf + "."):
                out[f"transformer.resblocks.{i}.{oc}{rest[len(hf):]}"] = v
    torch.manual_seed(5)
    width = sd["embeddings.token_embedding.weight"].shape[1]
    out["text_projection"] = torch.randn(width, width)  # present in SD 2.x checkpoints, unused
    return {"cond_stage_model.model." + k: v for k, v in out.items()}


# ---- sd.cpp's choice of types, gguf-py's quantization, a GGUF with no metadata ----

def sdcpp_type(name, t, qtype, source):
    ne0 = t.shape[-1]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    keep = (ne0 % block != 0 or name.endswith((".bias", ".scale", ".weight_scale"))
            or "time_embed." in name or "label_emb." in name or "embedding" in name)
    return source if keep else qtype


def encode(t, ty):
    a = t.detach().float().numpy().astype(np.float32)
    if ty == Q.F32:
        return a.tobytes(), a
    if ty == Q.F16:
        h = a.astype(np.float16)
        return h.tobytes(), h.astype(np.float32)
    q = gguf.quants.quantize(a, ty)
    return q.tobytes(), gguf.quants.dequantize(q, ty).reshape(a.shape)


def write_gguf(path, tensors):
    """tensors: name -> (bytes, torch shape, ggml type); GGUF v3, alignment 32, no key/values."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    head = [b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 0)]
    offset = 0
    for name, (raw, shape, ty) in tensors.items():
        head.append(s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in reversed(shape)))
        head.append(struct.pack("<IQ", int(ty), offset))
        offset += len(raw) + (-len(raw)) % 32
    head = b"".join(head)
    with open(path, "wb") as f:
        f.write(head + b"\0" * ((-len(head)) % 32))
        for raw, _, _ in tensors.values():
            f.write(raw + b"\0" * ((-len(raw)) % 32))


def quantize_all(ldm, qtype, source_of):
    """LDM state dict -> GGUF tensors, and the values as stored (dequantized) by name."""
    tensors, stored = {}, {}
    for name, t in ldm.items():
        ty = sdcpp_type(name, t, qtype, source_of(name))
        raw, values = encode(t, ty)
        tensors[name] = (raw, list(t.shape), ty)
        stored[name] = torch.from_numpy(np.ascontiguousarray(values))
    return tensors, stored


def check_with_diffusers(ldm, unet_model, vae_model):
    """diffusers' own LDM -> diffusers conversion gives back every UNet and VAE tensor."""
    u = sfu.convert_ldm_unet_checkpoint(ldm, dict(unet_model.config))
    want = unet_model.state_dict()
    assert set(u) == set(want), sorted(set(u) ^ set(want))[:8]
    assert all(torch.equal(u[k], want[k]) for k in want)
    v = sfu.convert_ldm_vae_checkpoint(ldm, dict(vae_model.config))
    want = vae_model.state_dict()
    assert set(v) == set(want), sorted(set(v) ^ set(want))[:8]
    assert all(torch.equal(v[k].reshape(want[k].shape), want[k]) for k in want)


def flat(t):
    return [round(float(x), 6) for x in t.detach().flatten()]


def build(name, sd2, qtype, tokenizer):
    torch.manual_seed(1 if sd2 else 0)
    u, v = unet(sd2), vae()
    t = text(tokenizer, 4 if sd2 else 3, "gelu" if sd2 else "quick_gelu")
    for m in (u, v, t):
        randomise_norms(m)
    attention_up = [bt == "CrossAttnUpBlock2D" for bt in u.config.up_block_types]
    ldm = {**ldm_unet(u.state_dict(), attention_up), **ldm_vae(v.state_dict(), 2)}
    check_with_diffusers(ldm, u, v)
    if sd2:
        # A UNet and text encoder only (the autoencoder given apart, as sd.cpp's `--vae`).
        ldm = {k: w for k, w in ldm.items() if not k.startswith("first_stage_model.")}
        ldm.update(openclip(t.state_dict()))
    else:
        # SD 1.x checkpoints hold transformers' CLIPTextModel under `cond_stage_model.transformer.`.
        ldm.update({"cond_stage_model.transformer.text_model." + k: w for k, w in t.state_dict().items()})
    unet_source = Q.F16
    other_source = Q.F32 if sd2 else Q.F16
    source = lambda n: unet_source if n.startswith("model.diffusion_model.") else other_source
    tensors, stored = quantize_all(ldm, qtype, source)
    write_gguf(OUT / f"{name}.gguf", tensors)
    types = {}
    for _, (_, _, ty) in tensors.items():
        types[ty.name] = types.get(ty.name, 0) + 1

    # The models with the stored values, back under diffusers' names.
    back_unet = sfu.convert_ldm_unet_checkpoint(stored, dict(u.config))
    u.load_state_dict(back_unet)
    if not sd2:
        back_vae = sfu.convert_ldm_vae_checkpoint(stored, dict(v.config))
        v.load_state_dict({k: w.reshape(v.state_dict()[k].shape) for k, w in back_vae.items()})
    if sd2:
        # OpenCLIP's penultimate layer: the tower without its last layer (diffusers' SD 2.x
        # text encoder has 23 of OpenCLIP's 24 layers).
        pre = "cond_stage_model.model.transformer.resblocks."
        ts = {}
        for k, w in stored.items():
            if not k.startswith("cond_stage_model.model."):
                continue
            ts[k] = w
        cut = text(tokenizer, 3, "gelu")
        sdict = {}
        for i in range(3):
            f = lambda s: ts[f"{pre}{i}.{s}"]
            d = 64
            for j, x in enumerate("qkv"):
                sdict[f"encoder.layers.{i}.self_attn.{x}_proj.weight"] = f("attn.in_proj_weight")[j * d:(j + 1) * d]
                sdict[f"encoder.layers.{i}.self_attn.{x}_proj.bias"] = f("attn.in_proj_bias")[j * d:(j + 1) * d]
            for hf, oc in [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"),
                           ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]:
                for kind in ("weight", "bias"):
                    sdict[f"encoder.layers.{i}.{hf}.{kind}"] = f(f"{oc}.{kind}")
        sdict["embeddings.token_embedding.weight"] = ts["cond_stage_model.model.token_embedding.weight"]
        sdict["embeddings.position_embedding.weight"] = ts["cond_stage_model.model.positional_embedding"]
        sdict["final_layer_norm.weight"] = ts["cond_stage_model.model.ln_final.weight"]
        sdict["final_layer_norm.bias"] = ts["cond_stage_model.model.ln_final.bias"]
        missing = cut.load_state_dict(sdict, strict=False)
        assert not missing.unexpected_keys and all("position_ids" in k for k in missing.missing_keys), missing
        t = cut
        pad = "!"
    else:
        pre = "cond_stage_model.transformer.text_model."
        t.load_state_dict({k[len(pre):]: w for k, w in stored.items() if k.startswith(pre)})
        pad = tokenizer.eos_token
    tok = CLIPTokenizer(str(VOCAB / "vocab.json"), str(VOCAB / "merges.txt"), pad_token=pad, model_max_length=77)
    ids = tok(PROMPT, padding="max_length", max_length=77).input_ids
    with torch.no_grad():
        states = t(torch.tensor([ids])).last_hidden_state
        g = torch.Generator().manual_seed(7)
        latent = torch.randn(1, 4, 8, 8, generator=g)
        out = u(latent, torch.tensor([500.0]), encoder_hidden_states=states).sample
        image = None if sd2 else v.decode(latent / 0.18215).sample
    drawn = None
    if not sd2:
        # A whole 2-step DDIM image (16 px: 8 latents, the autoencoder's factor 2) from pmg's seed.
        pipe = StableDiffusionPipeline(vae=v, text_encoder=t, tokenizer=tok, unet=u,
                                       scheduler=DDIMScheduler.from_config(SCHEDULER), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        initial = torch.from_numpy(SeededRng(DRAW["seed"]).normals(4 * 8 * 8)).reshape(1, 4, 8, 8)
        with torch.no_grad():
            drawn = pipe(PROMPT, height=16, width=16, num_inference_steps=DRAW["steps"], guidance_scale=DRAW["guidance"],
                         latents=initial, output_type="np").images[0]
        drawn = {**DRAW, "size": 16, "rgb_hex": u8_hex(drawn)}
    return {
        "file": f"{name}.gguf",
        "family": "sd2" if sd2 else "sd1",
        "types": types,
        "prompt_ids": ids,
        "states": flat(states),
        "latent": flat(latent),
        "timestep": 500,
        "unet_out": flat(out),
        "decoded": None if image is None else flat(image),
        "image": drawn,
    }


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "tokenizer").mkdir(parents=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(VOCAB / f, OUT / "tokenizer" / f)
    tokenizer = CLIPTokenizer(str(VOCAB / "vocab.json"), str(VOCAB / "merges.txt"), model_max_length=77)
    ref = {
        "source": f"scripts/golden_sd_gguf.py, diffusers {diffusers.__version__}, transformers "
        f"{transformers.__version__}, torch {torch.__version__}, gguf-py",
        "prompt": PROMPT,
        "models": [build("sd1-q8_0", False, Q.Q8_0, tokenizer), build("sd2-q4_0", True, Q.Q4_0, tokenizer)],
    }
    (OUT / "reference.json").write_text(json.dumps(ref) + "\n")
    for m in ref["models"]:
        print(m["file"], m["types"])
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(p.relative_to(OUT), p.stat().st_size)


if __name__ == "__main__":
    main()
