#!/usr/bin/env bash
# The whole test suite, from a fresh machine: install libtorch and the test tools if needed,
# build, run the Rust tests (arguments go to cargo test), the Helm chart checks, and the Python and
# Node clients against a live server (with buf lint).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
bash scripts/setup-tools.sh
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --check
else
    echo "test: rustfmt is not installed; skipping the format check" >&2
fi
# --lib --bins --tests: everything but doc-tests (there are none) and the benchmarks.
cargo test --release --lib --bins --tests "$@"
bash scripts/test-chart.sh
bash scripts/test-clients.sh
