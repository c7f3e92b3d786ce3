#!/usr/bin/env bash
# Tools the tests use besides Rust: promtool (Debian package prometheus; the metrics test runs
# `promtool check metrics`), and the virtualenv .venv-tools with pinned Python packages (Helm chart
# tests, the Python client, buf). Idempotent: pip runs only when a package
# is missing or at another version. Add a tool by appending "name==version" to `packages`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-tools"
packages=(
    # Helm 4's library (lint, render, values schema) without a helm binary; used by tests/helm.
    helm-python-sdk==0.2.2
    # Kubernetes' OpenAPI schemas (bundled, offline) for the rendered manifests; tests/helm.
    kubernetes-validate==1.37.0
    # gRPC for Python: clients/python (its runtime, stub generator, health and reflection clients).
    grpcio==1.85.1
    grpcio-tools==1.85.1
    grpcio-health-checking==1.85.1
    grpcio-reflection==1.85.1
    protobuf==7.36.2
    # The buf CLI, from PyPI: `buf lint` on proto/ (buf.yaml); scripts/test-clients.sh.
    buf-bin==1.75.0
)
if ! command -v promtool >/dev/null 2>&1; then
    echo "setup-tools: installing promtool (Debian package prometheus)"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        prometheus >/dev/null || {
        "${sudo[@]}" apt-get update >/dev/null &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
                --no-install-recommends prometheus >/dev/null
    }
fi
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "setup-tools: creating virtualenv $venv"
    python3 -m venv --clear "$venv" || {
        echo "setup-tools: python3 -m venv failed; on Debian install python3-venv" >&2
        exit 1
    }
fi
if ! "$venv/bin/python" - "${packages[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(any(version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))
PY
    echo "setup-tools: installing ${packages[*]}"
    "$venv/bin/python" -m pip install --quiet "${packages[@]}"
fi
