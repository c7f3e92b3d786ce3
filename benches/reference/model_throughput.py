"""transformers' CLIPModel forward throughput, the reference side of benches/model.rs: same
checkpoint, same inputs, same thread count, same timing rules. Driven by compare.py: prints a
JSON line when loaded, then answers "DTYPE MODALITY BATCH SECONDS" lines on stdin."""

import argparse
import contextlib
import json
import sys
import time

import torch
from transformers import CLIPModel

from inputs import bench_pixels, bench_token_ids


def measure(fn, min_seconds: float, min_iters: int = 3) -> float:
    """Seconds per call: two warm-up calls, then calls until both minimums are reached."""
    fn()
    fn()
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < min_seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = CLIPModel.from_pretrained(args.model, dtype=torch.float32).eval().to(device)
    size = model.config.vision_config.image_size
    autocast_dtypes = {"bf16": torch.bfloat16, "f16": torch.float16}

    def embed(features):
        # Like clipd: normalised, back on the CPU (which also waits for a GPU to finish).
        return torch.nn.functional.normalize(features.pooler_output.float(), dim=-1).cpu()

    print(json.dumps({"ready": "transformers"}), flush=True)
    for line in sys.stdin:
        dtype, modality, batch, seconds = line.split()
        batch = int(batch)
        autocast = (torch.autocast(device.type, dtype=autocast_dtypes[dtype])
                    if dtype in autocast_dtypes else contextlib.nullcontext())
        if modality == "image":
            pixels = bench_pixels(batch, size).to(device)
            fn = lambda: embed(model.get_image_features(pixel_values=pixels))
        else:
            ids = bench_token_ids(batch).to(device)
            fn = lambda: embed(model.get_text_features(input_ids=ids))
        with torch.inference_mode(), autocast:
            secs = measure(fn, float(seconds))
        print(json.dumps({"items_per_s": batch / secs}), flush=True)


if __name__ == "__main__":
    main()
