#!/usr/bin/env bash
# CLIP forward throughput, clipd next to Hugging Face transformers: same random ViT-B/32-shaped
# checkpoint, same inputs, same thread count, one run. Prints images/s and texts/s at batch 1, 8
# and 32 in f32 and bf16 (transformers: bf16 autocast), and clipd/transformers ratios.
#   scripts/bench-model.sh [--threads N] [--device cpu|cuda] [--dtypes f32,bf16] [--batches 1,8,32]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threads="$(nproc)" device=cpu dtypes=f32,bf16 batches=1,8,32 seconds=3
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2" ;;
        --device) device="$2" ;;
        --dtypes) dtypes="$2" ;;
        --batches) batches="$2" ;;
        --min-seconds) seconds="$2" ;;
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
cargo bench --quiet --bench model -- --model "$ckpt" --threads "$threads" --device "$device" \
    --dtypes "$dtypes" --batches "$batches" --min-seconds "$seconds" | tee "$out/clipd.jsonl"
ref_device_args=()
[ "$device" = cpu ] || ref_device_args=(--device "$device")
.venv-ref/bin/python benches/reference/model_throughput.py --model "$ckpt" --threads "$threads" \
    --dtypes "$dtypes" --batches "$batches" --min-seconds "$seconds" "${ref_device_args[@]}" \
    | tee "$out/transformers.jsonl"
echo "threads: $threads, device: $device"
python3 benches/reference/report.py "$out/clipd.jsonl" "$out/transformers.jsonl"
