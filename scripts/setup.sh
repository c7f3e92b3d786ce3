#!/usr/bin/env bash
# Installs what clipd needs to build and run on a fresh Debian machine with Rust and Python 3:
# libtorch 2.13.0 taken from PyPI's torch wheel into the project-local virtualenv .venv, and a
# stable link .libtorch -> .venv/.../site-packages/torch that .cargo/config.toml hands to tch.
# Idempotent: every step is skipped when its result is already there.
set -euo pipefail

TORCH_VERSION=2.13.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
cd "$root"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating virtualenv $venv"
    python3 -m venv "$venv"
fi

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
installed="$("$venv/bin/python" -m pip show torch 2>/dev/null | sed -n 's/^Version: //p' | cut -d+ -f1 || true)"

gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    gpu=1
fi
has_cuda_libs() { compgen -G "$site/nvidia/*/lib/libcublas.so*" >/dev/null; }

if [ "$installed" != "$TORCH_VERSION" ] || { [ "$gpu" = 1 ] && ! has_cuda_libs; }; then
    if [ "$gpu" = 1 ]; then
        echo "setup: NVIDIA GPU found; installing the full torch==$TORCH_VERSION (about 2.7 GB)"
        "$venv/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
    else
        # libtorch_cpu.so needs only the CUDA runtime and CUPTI to load; the rest of the CUDA
        # wheels (about 2 GB) are useless without a GPU.
        echo "setup: no NVIDIA GPU; installing the lean CPU torch==$TORCH_VERSION (about 540 MB)"
        "$venv/bin/python" -m pip install --quiet --no-deps "torch==$TORCH_VERSION" \
            nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    fi
fi

ln -sfn "$site/torch" "$root/.libtorch"
echo "setup: libtorch $TORCH_VERSION at $root/.libtorch"
