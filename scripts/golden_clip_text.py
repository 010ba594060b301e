"""A tiny random CLIPTextModel (diffusers' test sizes: hidden 32, 5 layers, 4 heads, MLP 37, vocab
1000) saved as a checkpoint folder (config.json + model.safetensors) and its last hidden states for
two token sequences, written to crates/pmg/tests/golden/clip-text/ (issue 21, deliver 1 and 4).
Variants: quick_gelu (SD 1.x's CLIP ViT-L/14) and gelu (SD 2.x's OpenCLIP ViT-H/14).

    /var/cache/pmg/torch-venv/bin/python scripts/golden_clip_text.py
"""

import json
import pathlib

import torch
import transformers
from transformers import CLIPTextConfig, CLIPTextModel

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/pmg/tests/golden/clip-text"
IDS = [[0, 5, 17, 993, 4, 2, 1, 1, 1, 1], [0, 700, 31, 2, 1, 1, 1, 1, 1, 1]]


def main():
    for act in ["quick_gelu", "gelu"]:
        torch.manual_seed(0)
        config = CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=1000,
            max_position_embeddings=77,
            hidden_act=act,
        )
        model = CLIPTextModel(config).eval()
        d = OUT / act
        model.save_pretrained(d, safe_serialization=True)
        with torch.no_grad():
            out = model(torch.tensor(IDS), output_hidden_states=True)
        ref = {
            "source": f"scripts/golden_clip_text.py, transformers {transformers.__version__}, torch {torch.__version__}",
            "ids": IDS,
            "last_hidden_state": out.last_hidden_state.flatten().tolist(),
            "penultimate": out.hidden_states[-2].flatten().tolist(),
            "pooled": out.pooler_output.flatten().tolist(),
        }
        (d / "reference.json").write_text(json.dumps(ref) + "\n")
        print(d, sorted(p.name for p in d.iterdir()))


if __name__ == "__main__":
    main()
