#!/usr/bin/env python3
"""Golden data from llama.cpp (through llama-cpp-python, an independent implementation) for the
same GGUF pmg runs: tokenizer ids for a corpus, and greedy 32-token continuations of prompts with
the top-5 logits at every step. Written to crates/pmg/tests/golden/smollm2_llama_cpp.json; crates/pmg/tests/llm_golden.rs
compares pmg against it.

    pip install llama-cpp-python==0.3.36   # builds llama.cpp from source (~20 min on 2 cores)
    scripts/fetch-models.sh && python3 scripts/golden_llama_cpp.py
"""
import hashlib, json, os, sys
import numpy as np
import llama_cpp

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "golden", "smollm2_llama_cpp.json")
STEPS = 32

CORPUS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces   ",
    "line one\nline two\n\n\nafter three newlines\r\n",
    "tabs\tand\t\tmore\ttabs",
    "Café, naïve, résumé, Ærøskøbing, São Paulo, Zürich",
    "日本語のテキストと中文文本，还有한국어.",
    "Emoji: 🐱🐶🎂☕️🌙 👩‍👩‍👧 🇫🇷",
    "Numbers 1234567890 and 3.14159 and 1,000,000",
    "code: fn main() { println!(\"hi\"); } // comment",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|> special tokens <|im_end|> inline",
    "don't won't they're I'll we've she'd",
    "ALL CAPS AND MiXeD cAsE",
    "",
    " ",
    "\n",
    "a" * 300,
]

CHAT = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n",
    "1, 2, 3, 4, 5,",
    "My favourite emoji are 🐱 and",
    "Le café est",
    CHAT.format("What is 2+2?"),
    CHAT.format("Give three words that describe a cozy morning with coffee."),
    CHAT.format("A user liked: 1. cat sticker 2. pastel pink heart 3. sleeping kitten. List 4 keywords for their taste."),
    CHAT.format("Write a haiku about the moon."),
]


def main():
    digest = hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=512, n_batch=512, n_threads=2, logits_all=True, verbose=False, seed=0)
    tokenizer = [{"text": t, "ids": llm.tokenize(t.encode(), add_bos=False, special=True)} for t in CORPUS]
    gens = []
    for p in PROMPTS:
        ids = llm.tokenize(p.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        out, steps = [], []
        for _ in range(STEPS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits, kind="stable")[:5]
            steps.append([[int(i), float(logits[i])] for i in order])
            tok = int(np.argmax(logits))  # greedy: first maximum, as llama.cpp's greedy sampler
            out.append(tok)
            llm.eval([tok])
        gens.append({"prompt": p, "prompt_ids": ids, "tokens": out, "top5": steps})
        print(repr(p[:40]), "->", repr(llm.detokenize(out).decode("utf-8", "replace")[:60]), file=sys.stderr)
    json.dump({
        "generator": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp CPU, n_threads=2)",
        "model_sha256": digest,
        "steps": STEPS,
        "tokenizer": tokenizer,
        "generations": gens,
    }, open(OUT, "w"), ensure_ascii=False, indent=None, separators=(",", ":"))
    print("wrote", os.path.normpath(OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
