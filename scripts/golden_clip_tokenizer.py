"""Reference tokenizations for pmg's CLIP tokenizer (issue 21): a small CLIP-style byte-level BPE
vocabulary (vocab.json + merges.txt, trained here on a few sentences, as a checkpoint's tokenizer/
folder holds them) and what transformers' CLIPTokenizer makes of hard strings, written to
crates/pmg/tests/golden/clip-tokenizer/.

    /var/cache/pmg/torch-venv/bin/python scripts/golden_clip_tokenizer.py   # transformers, tokenizers
"""

import json
import pathlib

import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTokenizer

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/pmg/tests/golden/clip-tokenizer"
CORPUS = [
    "a photo of a cat wearing a tiny hat, pastel colours, sticker style",
    "birthday cake with candles; smiling cat face; good night moon and stars",
    "a red sports car on a mountain road at sunset, 4k, highly detailed",
    "it's the cat's hat! we're ready, they've gone, I'll go, you'd say, I'm here",
    "watercolor painting of a dog in the park, soft light, 1990s film photo",
]
STRINGS = [
    "a photo of a cat",
    "  Birthday   CAKE\twith\ncandles!!  ",
    "it's a cat's hat, we're here; they'll say I'd go",
    "4k photo, 1990s, 12345 cats",
    "café naïve résumé, Ωmega",
    "emoji 🎂🐱 and <|endoftext|> inside",
    "",
    "unknownwordszzzqqq xylophone",
    "a " * 100,
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    # Train a CLIP-shaped BPE: the same normalizer and pre-tokenizer as CLIPTokenizer, "</w>" ends words.
    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab, merges = model["vocab"], model["merges"]
    (OUT / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n")
    lines = [" ".join(m) if isinstance(m, list) else m for m in merges]
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")

    clip = CLIPTokenizer(vocab=str(OUT / "vocab.json"), merges=str(OUT / "merges.txt"))
    cases = []
    for s in STRINGS:
        ids = clip(s)["input_ids"]
        padded = clip(s, padding="max_length", max_length=16, truncation=True)["input_ids"]
        cases.append({"text": s, "ids": ids, "padded16": padded})
    doc = {
        "source": f"scripts/golden_clip_tokenizer.py, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}",
        "vocab_size": len(vocab),
        "merges": len(lines),
        "bos": clip.bos_token_id,
        "eos": clip.eos_token_id,
        "cases": cases,
    }
    (OUT / "cases.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    print(f"{OUT}: {len(vocab)} tokens, {len(lines)} merges, {len(cases)} cases")


if __name__ == "__main__":
    main()
