#!/usr/bin/env bash
# The whole test suite, from a fresh machine: install libtorch if needed, build, test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --check
else
    echo "test: rustfmt is not installed; skipping the format check" >&2
fi
# --lib --bins --tests: everything but doc-tests (there are none) and the benchmarks.
cargo test --release --lib --bins --tests "$@"
