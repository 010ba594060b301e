#!/usr/bin/env bash
# The Python environment of the training-only PyTorch tools (eval/judge/train.py, scripts/torch/):
# a venv with torch, numpy, safetensors and pillow from PyPI (torch's Linux wheel brings the CUDA
# libraries: ~5 GB). Never needed by the product, the tests or CI. Prints the venv's python.
#   PY=$(scripts/torch-env.sh) && "$PY" eval/judge/train.py
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${PMG_TORCH_VENV:-$root/.venv-torch}
if ! "$venv/bin/python" -c 'import torch, numpy, safetensors, PIL' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet torch numpy safetensors pillow >&2
fi
echo "$venv/bin/python"
