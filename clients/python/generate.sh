#!/usr/bin/env bash
# Generates the Python gRPC stubs for proto/clipd/v1/clipd.proto into clients/python/gen/ (not
# committed): gen/clipd/v1/clipd_pb2.py, clipd_pb2.pyi and clipd_pb2_grpc.py.
# Usage: clients/python/generate.sh [PYTHON]   (default: .venv-tools/bin/python, which
# scripts/setup-tools.sh fills with grpcio-tools; any Python with grpcio-tools will do).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${1:-$root/.venv-tools/bin/python}"
out="$here/gen"
rm -rf "$out"
mkdir -p "$out"
"$python" -m grpc_tools.protoc -I "$root/proto" \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    "$root/proto/clipd/v1/clipd.proto"
echo "generate: stubs in $out/clipd/v1"
