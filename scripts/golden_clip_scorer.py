"""A tiny random CLIPModel as a complete scorer folder (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, preprocessor_config.json) with four test PNGs and transformers' outputs for
them (reference.json), and small random images through the processor alone (resize-cases.json),
written to crates/pmg/tests/golden/clip-tiny/ (issue 21: PMG's scorer on a standard CLIP,
`pmg::sd::clip_scorer`). Sizes are transformers' CLIP test sizes (scripts/golden_clip_model.py); the
vocabulary is the tiny BPE of crates/pmg/tests/golden/clip-tokenizer/. The image processor is
`CLIPImageProcessorPil` (what `CLIPImageProcessor` falls back to without torchvision): PIL bicubic
resize of the shortest edge, center crop, rescale, normalise. Pillow 13 picks the order of the
resampler's two passes by the sizes (see `resample_bicubic` in the Rust), so regenerate with it.

    /var/cache/pmg/torch-venv/bin/python scripts/golden_clip_scorer.py
"""

import json
import pathlib

import numpy as np
import PIL
import torch
import transformers
from PIL import Image, ImageDraw
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/pmg/tests/golden/clip-tiny"
VOCAB = ROOT / "crates/pmg/tests/golden/clip-tokenizer"
TEXTS = ["a photo of a cat", "birthday cake with candles", ""]


def image(i):
    """Deterministic test images: gradients, shapes and noise (rounding edge cases for the resampler)."""
    rng = np.random.RandomState(i)
    # (width, height, mode): a downscaled square, a downscaled wide one (cropped), one the processor
    # leaves as it is, and an upscaled tall one with transparency (composited over white).
    w, h, mode = [(64, 64, "RGB"), (80, 48, "RGB"), (30, 30, "RGB"), (23, 37, "RGBA")][i]
    y, x = np.mgrid[0:h, 0:w]
    a = np.zeros((h, w, 4), np.float64)
    a[..., 0] = 255 * x / max(w - 1, 1)
    a[..., 1] = 255 * y / max(h - 1, 1)
    a[..., 2] = 128 + 127 * np.sin((x + 2 * y) / 3.0)
    a[..., :3] += rng.normal(0, 25, (h, w, 3))
    a[..., 3] = 255
    if mode == "RGBA":
        a[..., 3] = np.clip(255 * (x + y) / (w + h - 2) + rng.normal(0, 20, (h, w)), 0, 255)
        a[:4, :, 3] = 0
    im = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "RGBA")
    d = ImageDraw.Draw(im)
    d.ellipse((w // 5, h // 4, w // 2, h // 2 + 3), fill=(250, 20, 40, 255))
    d.rectangle((w // 2, h // 2, w - 3, h - 5), fill=(10, 30, 220, 200 if mode == "RGBA" else 255))
    d.line((0, h - 1, w - 1, 0), fill=(0, 0, 0, 255), width=1)
    return im.convert(mode)


def resize_case(rng, w, h, edge, crop):
    rgba = rng.randint(0, 256, (h, w, 4)).astype(np.uint8)
    if rng.rand() < 0.5:
        rgba[..., 3] = 255
    p = CLIPImageProcessorPil(size={"shortest_edge": edge}, crop_size={"height": crop[0], "width": crop[1]})
    mode = "RGB" if (rgba[..., 3] == 255).all() else "RGBA"
    im = Image.fromarray(rgba, "RGBA").convert(mode)
    out = p(im, do_rescale=False, do_normalize=False, return_tensors="np").pixel_values[0]
    return {
        "width": w,
        "height": h,
        "rgba": rgba.flatten().tolist(),
        "shortest_edge": edge,
        "crop": crop,
        "crop_u8": np.asarray(out).astype(np.uint8).flatten().tolist(),
    }


def resize_cases():
    """Random small RGB(A) images through the processor at random shortest edges and crops (up- and
    downscales, crops inside and beyond the resized image), before rescaling: the resampler alone.
    The last cases sit on Pillow 13's choice of pass order (vertical first when the height loses
    more than twice as many pixels as the width) and on an extreme aspect ratio."""
    rng = np.random.RandomState(7)
    cases = []
    for _ in range(36):
        w, h = int(rng.randint(1, 17)), int(rng.randint(1, 17))
        edge, crop = int(rng.randint(1, 21)), [int(rng.randint(1, 17)), int(rng.randint(1, 17))]
        cases.append(resize_case(rng, w, h, edge, crop))
    # Tall images (the width is the short side) at the boundary of the order rule and just past it.
    for extra in [0, 1]:
        w, h, edge = next(
            (w, h, e)
            for w in range(4, 20)
            for h in range(w + 1, 40)
            for e in range(2, w)
            if h - int(e * h / w) == 2 * (w - e) + extra
        )
        cases.append(resize_case(rng, w, h, edge, [min(int(edge * h / w), 16), edge]))
    cases.append(resize_case(rng, 5, 90, 20, [16, 11]))
    return cases


def main():
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer(str(VOCAB / "vocab.json"), str(VOCAB / "merges.txt"), model_max_length=77)
    common = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5, layer_norm_eps=1e-5)
    config = CLIPConfig(
        text_config=dict(
            common,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(common, image_size=30, patch_size=2, num_channels=3),
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    model.save_pretrained(OUT, safe_serialization=True)
    tokenizer.save_pretrained(OUT)
    processor.save_pretrained(OUT)

    images = []
    for i in range(4):
        path = OUT / f"test-{i}.png"
        image(i).save(path)
        images.append(Image.open(path))
    # What the Rust side reads: the saved PNGs, decoded by PIL as transformers would get them.
    pixels = processor(images, return_tensors="pt").pixel_values
    raw = processor(images, do_rescale=False, do_normalize=False, return_tensors="np").pixel_values
    ids = tokenizer(TEXTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixels)
    ref = {
        "source": f"scripts/golden_clip_scorer.py, transformers {transformers.__version__}, "
        f"torch {torch.__version__}, Pillow {PIL.__version__}",
        "texts": TEXTS,
        "ids": ids.tolist(),
        "images": [f"test-{i}.png" for i in range(4)],
        # Resized and cropped, before rescaling: [b, 3, 30, 30] 8-bit levels.
        "crop_u8": np.asarray(raw).astype(np.uint8).flatten().tolist(),
        "pixel_values": pixels.flatten().tolist(),
        "text_embeds": out.text_embeds.flatten().tolist(),
        "image_embeds": out.image_embeds.flatten().tolist(),
        "logits_per_image": out.logits_per_image.flatten().tolist(),
    }
    (OUT / "reference.json").write_text(json.dumps(ref) + "\n")
    (OUT / "resize-cases.json").write_text(json.dumps(resize_cases()) + "\n")
    print(OUT, sorted((p.name, p.stat().st_size) for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
