# syntax=docker/dockerfile:1
#
# clipd container image, in two stages:
#   builder: Rust + scripts/setup.sh (libtorch from PyPI's torch wheel into .venv), release build;
#   runtime: debian:bookworm-slim with the `clipd` binary and only the shared libraries it loads.
#
#   docker build -t clipd:0.1.0 .                                   # CPU image (lean torch, ~600 MB)
#   docker build -t clipd:0.1.0-cuda --build-arg TORCH_FLAVOR=cuda .  # CUDA image (full torch)
#   docker run --rm -p 50051:50051 -p 9090:9090 clipd:0.1.0          # bundled demo model
#   docker run --rm -v $PWD/clipd.yaml:/etc/clipd/clipd.yaml:ro clipd:0.1.0 \
#       serve --config /etc/clipd/clipd.yaml
#
# The CUDA image needs an NVIDIA driver >= 580 on the host (PyPI's torch is built for CUDA 13) and
# `--gpus all` (or the nvidia.com/gpu resource in Kubernetes).

# cpu: `--no-deps torch` + the two CUDA wheels libtorch_cpu.so links against (what scripts/setup.sh
# installs on a machine without a GPU). cuda: the full torch wheel with its CUDA libraries.
ARG TORCH_FLAVOR=cpu

FROM rust:1-bookworm AS builder
ARG TORCH_FLAVOR
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian stable's packages only get fixes: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# setup.sh picks the lean CPU install when `nvidia-smi` is missing (always, in a build); for the
# CUDA flavour, install the full torch first: setup.sh then finds the right version and keeps it.
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    if [ "$TORCH_FLAVOR" = cuda ]; then \
        . scripts/versions.sh; \
        python3 -m venv .venv; \
        .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION"; \
    fi; \
    bash scripts/setup.sh
# build.rs writes an rpath to the *resolved* libtorch folder,
# /src/.venv/lib/python3.X/site-packages/torch/lib, into the binary; torch's own libraries find
# the CUDA ones through $ORIGIN/../../nvidia/... So the runtime stage gets torch/lib and nvidia/
# at that same absolute path (staged under /staging here), and needs no LD_LIBRARY_PATH.
# libtorch_python.so is for Python only, and the CPU image never loads torch's CUDA libraries.
# ldd, pointed at the staged copy, fails the build here (not at start-up) if a library is missing.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    cargo build --release --bin clipd; \
    install -D target/release/clipd /staging/usr/local/bin/clipd; \
    site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
    mkdir -p "/staging$site/torch"; \
    cp -a "$site/torch/lib" "/staging$site/torch/"; \
    if [ -d "$site/nvidia" ]; then cp -a "$site/nvidia" "/staging$site/"; fi; \
    rm -f "/staging$site/torch/lib/libtorch_python.so"; \
    if [ "$TORCH_FLAVOR" = cpu ]; then \
        rm -f "/staging$site/torch/lib/"libtorch_cuda*.so "/staging$site/torch/lib/libc10_cuda.so" \
              "/staging$site/torch/lib/libcaffe2_nvrtc.so" "/staging$site/torch/lib/libtorch_nvshmem.so"; \
    fi; \
    if LD_LIBRARY_PATH="/staging$site/torch/lib" ldd /staging/usr/local/bin/clipd | grep "not found"; then \
        exit 1; \
    fi; \
    /staging/usr/local/bin/clipd --version

FROM debian:bookworm-slim AS runtime
# ca-certificates: Hugging Face hub downloads over HTTPS; libstdc++6/libgcc-s1: libtorch.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 libgcc-s1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 clipd \
    && useradd --system --uid 10001 --gid clipd --home-dir /home/clipd --create-home clipd \
    && mkdir -p /etc/clipd /var/lib/clipd \
    && chown clipd:clipd /var/lib/clipd
COPY --from=builder /staging/ /
# Relative paths in the settings (index.data_dir defaults to "clipd-data") land here; the demo
# model is unpacked under $HOME/.cache/clipd (XDG_CACHE_HOME moves it, e.g. to a mounted volume).
WORKDIR /var/lib/clipd
USER 10001:10001
ENV HOME=/home/clipd
# gRPC (server.grpc_addr) and /metrics, /livez, /readyz (metrics.addr).
EXPOSE 50051 9090
ENTRYPOINT ["clipd"]
# No config file needed: defaults + CLIPD__SECTION__KEY environment variables + flags. The Helm
# chart runs `serve --config /etc/clipd/clipd.yaml` with its ConfigMap mounted there.
CMD ["serve"]
