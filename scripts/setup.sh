#!/usr/bin/env bash
# Installs what clipd needs to build and run on a fresh Debian machine with Rust and Python 3:
# libtorch (scripts/versions.sh) taken from PyPI's torch wheel into the project-local virtualenv
# .venv, and a stable link .libtorch -> .venv/.../site-packages/torch that .cargo/config.toml hands
# to tch. Idempotent: every step is skipped when its result is already there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/versions.sh"
venv="$root/.venv"
cd "$root"

# A failed earlier attempt (no ensurepip, say) can leave a virtualenv without pip behind.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "setup: creating virtualenv $venv"
    python3 -m venv --clear "$venv" || {
        echo "setup: python3 -m venv failed; on Debian install python3-venv" >&2
        exit 1
    }
fi

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
installed="$("$venv/bin/python" -m pip show torch 2>/dev/null | sed -n 's/^Version: //p' | cut -d+ -f1 || true)"

gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    gpu=1
fi
# The same rule as build.rs: libtorch_cuda.so loads only with cuBLAS and cuDNN installed.
has_cuda_libs() {
    compgen -G "$site/nvidia/*/lib/libcublas.so*" >/dev/null &&
        compgen -G "$site/nvidia/*/lib/libcudnn.so*" >/dev/null
}

if [ "$installed" != "$TORCH_VERSION" ] || { [ "$gpu" = 1 ] && ! has_cuda_libs; }; then
    if [ "$gpu" = 1 ]; then
        echo "setup: NVIDIA GPU found; installing the full torch==$TORCH_VERSION (about 2.7 GB)"
        driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
        if [ "${driver%%.*}" -lt 580 ] 2>/dev/null; then
            echo "setup: warning: driver $driver; PyPI's torch $TORCH_VERSION is built for CUDA 13," \
                "which needs driver 580 or newer: clipd will fall back to the CPU" >&2
        fi
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
