"""hnswlib's side of benches/index.rs (scripts/bench-index.sh): the same vectors, settings and
measurements, with hnswlib 0.8.0 and numpy 2.4.6 (.venv-ann).

    python hnswlib_bench.py target/bench/index

Reads meta.json and the raw little-endian files beside it, builds an inner-product index with the
same M, ef_construction and thread count (timed), then for each ef_search: recall@k against the
exact neighbours from the first pass over the queries, and the queries/s of one thread calling
knn_query once per query, as a server thread would, repeated for at least `seconds`. Prints one
JSON object on stdout.
"""

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import hnswlib
import numpy as np


def main() -> None:
    folder = Path(sys.argv[1])
    meta = json.loads((folder / "meta.json").read_text())
    dim, k = meta["dim"], meta["k"]
    files = meta["files"]
    base = np.fromfile(folder / files["base"], dtype="<f4").reshape(meta["count"], dim)
    queries = np.fromfile(folder / files["queries"], dtype="<f4").reshape(meta["queries"], dim)
    truth = np.fromfile(folder / files["truth"], dtype="<u4").reshape(meta["queries"], k)
    truth_sets = [set(row.tolist()) for row in truth]

    start = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(
        max_elements=len(base), ef_construction=meta["ef_construction"], M=meta["m"]
    )
    index.set_num_threads(meta["threads"])
    index.add_items(base, np.arange(len(base)))
    build_s = time.perf_counter() - start
    print(f"hnswlib build: {build_s:.1f} s", file=sys.stderr)
    del base

    # Single queries: hnswlib would otherwise spread one call's rows over threads.
    index.set_num_threads(1)
    rows = list(queries)
    runs = []
    for ef in meta["ef_search"]:
        index.set_ef(max(ef, k))
        start = time.perf_counter()
        found = [index.knn_query(q, k=k)[0][0] for q in rows]
        done = len(rows)
        while time.perf_counter() - start < meta["seconds"]:
            for q in rows:
                index.knn_query(q, k=k)
            done += len(rows)
        qps = done / (time.perf_counter() - start)
        hits = sum(len(truth_sets[i] & set(f.tolist())) for i, f in enumerate(found))
        recall = hits / (k * len(rows))
        print(f"hnswlib ef_search {ef}: recall {recall:.4f}, {qps:.0f} queries/s", file=sys.stderr)
        runs.append({"ef_search": ef, "recall": recall, "qps": qps})

    print(json.dumps({"hnswlib": version("hnswlib"), "build_s": build_s, "runs": runs}))


if __name__ == "__main__":
    main()
