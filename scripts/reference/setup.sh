#!/usr/bin/env bash
# The Python reference environment (.venv-ref): torch, transformers and Pillow at the versions the
# fixtures were made with, used only to regenerate fixtures and to run the reference side of the
# benchmarks; never by the tests. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/scripts/versions.sh"
venv="$root/.venv-ref"
packages=("torch==$TORCH_VERSION" transformers==5.24.0 pillow==13.0.0 safetensors==0.8.0)
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    python3 -m venv --clear "$venv"
fi
if ! "$venv/bin/python" - "${packages[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(any(version(p.split("==")[0]).split("+")[0] != p.split("==")[1] for p in sys.argv[1:]))
PY
    echo "reference: installing ${packages[*]} (a few GB)"
    "$venv/bin/python" -m pip install --quiet "${packages[@]}" numpy
fi
