#!/usr/bin/env bash
# The collection stores side by side through clipd's gRPC API, in one run (benches/stores.rs): the
# same clustered unit vectors upserted into the embedded store and into a private Milvus 2.3.5
# (scripts/with-milvus.sh starts it, in a network namespace of its own; needs root), then upsert
# items/s, search queries/s and recall@k at each ef_search and concurrency, filtered search
# (shard = --shard), and two clipd servers on one Milvus against one.
#   scripts/bench-stores.sh [--count 100000] [--queries 200] [--dim 512] [--k 10]
#                           [--ef-search 16,32,64,128,256] [--concurrency 1,8] [--batch 1000]
#                           [--seconds 3] [--shards 16] [--shard 3] [--settle-seconds 300]
#                           [--settle-passes 3] [--milvus-flush] [--threads 2] [--seed 1]
# The servers run in the benchmark's process and load a random-weight checkpoint of the demo
# model's shape with --dim-dimensional embeddings, written into target/bench/stores/ (the items
# and queries are sent as vectors). Milvus seals, indexes and loads segments in the background:
# after the upserts the benchmark searches until the recall stops changing and reports the wait
# and what Milvus serves from where; --milvus-flush has Milvus seal every segment first (clipd
# never asks it to), for the figures of its HNSW index over every row. The table is also written
# to target/bench/stores.txt. Outside with-milvus.sh (`cargo bench --bench stores`), the Milvus
# side is skipped unless MILVUS_URL names one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
bash scripts/setup-milvus.sh
mkdir -p target/bench
bash scripts/with-milvus.sh cargo bench --bench stores -- "$@"
