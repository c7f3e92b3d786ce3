#!/usr/bin/env bash
# The Python reference environment (.venv-ref): torch 2.13.0, transformers and Pillow, used only to
# regenerate fixtures and to run the reference side of the benchmarks; never by the tests.
# Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-ref"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import torch, transformers, PIL, safetensors' 2>/dev/null; then
    echo "reference: installing torch 2.13.0, transformers 5.24.0, Pillow 13 (a few GB)"
    "$venv/bin/python" -m pip install --quiet torch==2.13.0 transformers==5.24.0 pillow==13.0.0 \
        safetensors==0.8.0 numpy
fi
