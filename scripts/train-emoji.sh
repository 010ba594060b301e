#!/usr/bin/env bash
# The generator and scorer training recipe, CPU reference (see models/EMOJI-MODELS.md for times):
#   scripts/train-emoji.sh            # every stage; a rerun resumes from the run folders' checkpoints
# Stages: fetch the emoji data (npm registry), embed every caption with the LLM, train the
# autoencoder, the denoiser, the scorer and PMG's implicit-preference soft prompt (on the frozen
# LLM and denoiser). Exports land in models/emoji-*.safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
pmg=${PMG_BIN:-target/release/pmg}
[ -x "$pmg" ] || cargo build --release
# emoji-v4 (shipped) was trained on the Google style alone: the multi-style dataset
# (scripts/fetch-emoji.sh without --google-only) is the next generator's, trained with scripts/torch/.
[ -f data/emoji/dataset.json ] || scripts/fetch-emoji.sh --google-only
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || scripts/fetch-models.sh
stage() { echo "== $1 ($(date -u +%H:%M:%S))"; }
stage embed
[ -f data/emoji/captions.safetensors ] || "$pmg" train embed
stage autoencoder
[ -f runs/autoencoder/done ] || { "$pmg" train autoencoder --resume && touch runs/autoencoder/done; }
stage diffusion
# From a training pack (latents and deduplicated int8 caption states in one file, read faster than
# the dataset), with two data-parallel workers, one half of each batch per core: ~0.7 s per step.
[ -f data/emoji/train-pack.safetensors ] || "$pmg" train pack
[ -f runs/diffusion/done ] || { "$pmg" train diffusion --resume --workers 2 --pack data/emoji/train-pack.safetensors && touch runs/diffusion/done; }
stage scorer
[ -f runs/scorer/done ] || { "$pmg" train scorer --resume && touch runs/scorer/done; }
stage soft-prompt
[ -f runs/soft-prompt/done ] || { "$pmg" train soft-prompt --resume && touch runs/soft-prompt/done; }
stage done
