#!/usr/bin/env bash
# The HNSW index against exact search and against Python's hnswlib (from PyPI) with the same
# settings, in one run: recall@k and single-thread queries/s at each ef_search, and build time.
#   scripts/bench-index.sh [--count 100000] [--queries 1000] [--dim 512] [--m 24]
#                          [--ef-construction 200] [--ef-search 16,32,64,128,256] [--k 10]
#                          [--threads 2] [--seed 1]
# The vectors (clustered unit vectors, made from --seed) and the exact neighbours go to
# target/bench/index/ for benches/reference/hnswlib_bench.py, which runs in .venv-ann (hnswlib and
# numpy at pinned versions, made here on first use; hnswlib builds from source: needs a C++
# compiler). CLIPD_HNSWLIB_PYTHON names another interpreter with hnswlib. The table is also
# written to target/bench/index.txt.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
if [ -z "${CLIPD_HNSWLIB_PYTHON:-}" ]; then
    venv="$root/.venv-ann"
    packages=(hnswlib==0.8.0 numpy==2.4.6)
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        python3 -m venv --clear "$venv"
    fi
    if ! "$venv/bin/python" - "${packages[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(any(version(p.split("==")[0]).split("+")[0] != p.split("==")[1] for p in sys.argv[1:]))
PY
        echo "bench-index: installing ${packages[*]}"
        "$venv/bin/python" -m pip install --quiet "${packages[@]}"
    fi
fi
mkdir -p target/bench
cargo bench --bench index -- "$@" | tee target/bench/index.txt
