#!/usr/bin/env bash
# Image preprocessing time per image on one thread, clipd next to transformers' PIL path
# (CLIPImageProcessorPil), on photo-sized JPEGs and a PNG, in one run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
bash scripts/reference/setup.sh
out="$root/target/bench"
mkdir -p "$out/photos"
.venv-ref/bin/python benches/reference/make_photos.py "$out/photos"
# openai/clip-vit-base-patch32's preprocessor_config.json: shortest edge and crop 224.
model="$out/vit-b-32"
.venv-ref/bin/python benches/reference/make_checkpoint.py "$model" \
    tests/fixtures/models/tokenizer/tokenizer.json --preprocessor-only
photos=("$out"/photos/*)
cargo bench --quiet --bench preprocess -- --model "$model" "${photos[@]}" | tee "$out/pre-clipd.jsonl"
.venv-ref/bin/python benches/reference/preprocess_throughput.py --model "$model" "${photos[@]}" \
    | tee "$out/pre-transformers.jsonl"
python3 - "$out/pre-clipd.jsonl" "$out/pre-transformers.jsonl" <<'PY'
import json, sys
rows = {}
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)
        rows.setdefault(r["image"], {})[r["impl"]] = r["ms"]
print(f"{'image':<24}{'clipd ms':>10}{'transformers ms':>17}{'speed-up':>10}")
for image, v in sorted(rows.items()):
    print(f"{image:<24}{v['clipd']:>10.2f}{v['transformers']:>17.2f}{v['transformers'] / v['clipd']:>9.2f}x")
PY
