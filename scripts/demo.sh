#!/usr/bin/env bash
# Sets everything up and runs the gRPC server with its bundled demo model on 0.0.0.0:50051.
# Extra arguments go to `clipd serve` (e.g. --grpc-addr 127.0.0.1:50052, --model DIR_OR_HUB_ID).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
exec cargo run --release --quiet -- serve "$@"
