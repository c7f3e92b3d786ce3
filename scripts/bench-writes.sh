#!/usr/bin/env bash
# What writes to a collection cost the searches beside them: searches alone, then beside a stream
# of acknowledged upserts, in one run (benches/writes.rs).
#   scripts/bench-writes.sh [--count 20000] [--dim 512] [--writes 300] [--batch 1]
#                           [--searchers 1] [--seconds 3] [--seed 1]
# The table is also written to target/bench/writes.txt.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
mkdir -p target/bench
cargo bench --bench writes -- "$@" | tee target/bench/writes.txt
