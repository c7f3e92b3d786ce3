#!/usr/bin/env bash
# The gRPC server under load next to the model's raw batched forward throughput, in one run:
# requests/s and p50/p99 latency at each concurrency for single-image and single-text Embed
# requests (clients written with the generated client), as a share of the raw figure; then
# single-image Classify against classifiers of each --labels count next to Embed.
#   scripts/bench-serve.sh [--model DIR_OR_HUB_ID|demo] [--concurrency 1,8,32,128] [--seconds 10]
#                          [--batch-size 32] [--max-delay-ms 5] [--threads N] [--device cpu|cuda]
#                          [--dtype f32|f16|bf16] [--labels 10,1000,20000]
#                          [--classify-concurrency 8]
# Default model: a random-weight checkpoint shaped like openai/clip-vit-base-patch32, written into
# target/bench/ with transformers (the reference environment) on first use; `--model demo` uses the
# bundled demo model and needs no Python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="" args=()
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
    case "$1" in
        --model) model="$2" ;;
        *) args+=("$1" "$2") ;;
    esac
    shift 2
done
bash scripts/setup.sh
if [ -z "$model" ]; then
    bash scripts/reference/setup.sh
    model="$root/target/bench/vit-b-32"
    .venv-ref/bin/python benches/reference/make_checkpoint.py "$model" \
        tests/fixtures/models/tokenizer/tokenizer.json
fi
[ "$model" = demo ] && model_args=() || model_args=(--model "$model")
mkdir -p target/bench
cargo bench --bench serve -- "${model_args[@]}" "${args[@]}" | tee target/bench/serve.txt
