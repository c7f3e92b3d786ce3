#!/usr/bin/env bash
# The whole test suite, from a fresh machine: install libtorch and the test tools if needed,
# check the format and the lints (clippy, warnings as errors), build, run the Rust tests
# (arguments go to cargo test; without any, the collection-store tests once more on a real
# Milvus), the Helm chart checks, and the Python and Node clients against a
# live server (with buf lint).
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
# In the release profile, so that the test build below reuses its build scripts' output.
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --release --all-targets -- -D warnings
else
    echo "test: clippy is not installed; skipping the lint check" >&2
fi
# --lib --bins --tests: everything but doc-tests (there are none) and the benchmarks.
cargo test --release --lib --bins --tests "$@"
# The collection-store suite again on Milvus: a real Milvus 2.3.5 started beside it, both in a
# network namespace of their own (scripts/with-milvus.sh). One test at a time: one of them kills
# and restarts that Milvus. Then the token tests, beside a Milvus with authorization.
if [ "$#" -eq 0 ]; then
    bash scripts/setup-milvus.sh
    bash scripts/with-milvus.sh cargo test --release --offline --test grpc -- --ignored \
        stores::milvus:: --test-threads=1
    MILVUS_AUTH=1 bash scripts/with-milvus.sh cargo test --release --offline --test grpc -- \
        --ignored stores::milvus_auth --test-threads=1
fi
bash scripts/test-chart.sh
bash scripts/test-clients.sh
