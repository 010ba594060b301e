"""A tiny random CLIPModel (text and vision towers with their projections; transformers' test sizes:
width 32, 5 layers, 4 heads, MLP 37, images 30x30 in patches of 2) saved as a checkpoint folder and its
text and image embeddings, written to crates/pmg/tests/golden/clip-model/ (issue 21: PMG's scorer
on a standard CLIP).

    /var/cache/pmg/torch-venv/bin/python scripts/golden_clip_model.py
"""

import json
import pathlib

import torch
import transformers
from transformers import CLIPConfig, CLIPModel

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/pmg/tests/golden/clip-model"
IDS = [[0, 5, 17, 993, 4, 2, 1, 1], [0, 700, 31, 2, 1, 1, 1, 1]]


def main():
    torch.manual_seed(0)
    common = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5, layer_norm_eps=1e-5)
    config = CLIPConfig(
        text_config=dict(common, vocab_size=1000, max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(common, image_size=30, patch_size=2, num_channels=3),
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(OUT, safe_serialization=True)
    pixels = torch.randn(2, 3, 30, 30, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(input_ids=torch.tensor(IDS), pixel_values=pixels)
    ref = {
        "source": f"scripts/golden_clip_model.py, transformers {transformers.__version__}, torch {torch.__version__}",
        "ids": IDS,
        "pixels": pixels.flatten().tolist(),
        "text_embeds": out.text_embeds.flatten().tolist(),
        "image_embeds": out.image_embeds.flatten().tolist(),
        "logits_per_image": out.logits_per_image.flatten().tolist(),
    }
    (OUT / "reference.json").write_text(json.dumps(ref) + "\n")
    print(OUT, sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
