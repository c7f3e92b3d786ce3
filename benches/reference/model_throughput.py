"""transformers' CLIPModel forward throughput, the reference side of benches/model.rs: same
checkpoint, same inputs, same thread count, same timing rules. Prints one JSON line per case."""

import argparse
import contextlib
import json
import time

import torch
from transformers import CLIPModel

from inputs import bench_pixels, bench_token_ids


def measure(fn, min_seconds: float, min_iters: int) -> float:
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
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--min-iters", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = CLIPModel.from_pretrained(args.model, dtype=torch.float32).eval().to(device)
    autocast_dtypes = {"bf16": torch.bfloat16, "f16": torch.float16}

    def embed(features):
        # Like clipd: normalised, back on the CPU (which also waits for a GPU to finish).
        return torch.nn.functional.normalize(features.pooler_output.float(), dim=-1).cpu()

    for dtype in args.dtypes.split(","):
        autocast = (torch.autocast(device.type, dtype=autocast_dtypes[dtype])
                    if dtype in autocast_dtypes else contextlib.nullcontext())
        for batch in map(int, args.batches.split(",")):
            pixels = bench_pixels(batch, model.config.vision_config.image_size).to(device)
            ids = bench_token_ids(batch).to(device)
            with torch.inference_mode(), autocast:
                for modality, fn in [
                    ("image", lambda: embed(model.get_image_features(pixel_values=pixels))),
                    ("text", lambda: embed(model.get_text_features(input_ids=ids))),
                ]:
                    secs = measure(fn, args.min_seconds, args.min_iters)
                    print(json.dumps({"impl": "transformers", "dtype": dtype, "modality": modality,
                                      "batch": batch, "items_per_s": batch / secs}), flush=True)


if __name__ == "__main__":
    main()
