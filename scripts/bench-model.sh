#!/usr/bin/env bash
# CLIP forward throughput, clipd next to Hugging Face transformers: same random ViT-B/32-shaped
# checkpoint, same inputs, same thread count, one run. Prints images/s and texts/s at batch 1, 8
# and 32 in f32 and bf16 (transformers: bf16 autocast), and clipd/transformers ratios. The two
# alternate case by case for --rounds rounds and each case keeps its best round.
#   scripts/bench-model.sh [--threads N] [--device cpu|cuda] [--dtypes f32,bf16] [--batches 1,8,32]
#                          [--rounds 3] [--min-seconds 2]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads="$(nproc)" device=cpu dtypes=f32,bf16 batches=1,8,32 seconds=2 rounds=3
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
    case "$1" in
        --threads) threads="$2" ;;
        --device) device="$2" ;;
        --dtypes) dtypes="$2" ;;
        --batches) batches="$2" ;;
        --min-seconds) seconds="$2" ;;
        --rounds) rounds="$2" ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
bash scripts/setup.sh
bash scripts/reference/setup.sh
out="$root/target/bench"
ckpt="$out/vit-b-32"
mkdir -p "$out"
.venv-ref/bin/python benches/reference/make_checkpoint.py "$ckpt" \
    tests/fixtures/models/tokenizer/tokenizer.json
# The bench executable, as cargo printed it: target/release/deps/model-HASH.
bench_bin="$(cargo bench --no-run --bench model --message-format=json \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')"
python3 benches/reference/compare.py --dtypes "$dtypes" --batches "$batches" \
    --rounds "$rounds" --min-seconds "$seconds" \
    --clipd "$bench_bin --model $ckpt --threads $threads --device $device --dtypes $dtypes" \
    --reference "$root/.venv-ref/bin/python $root/benches/reference/model_throughput.py \
        --model $ckpt --threads $threads --device $device" | tee "$out/model.txt"
echo "threads: $threads, device: $device"
