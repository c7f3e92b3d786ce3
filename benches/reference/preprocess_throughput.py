"""CLIPImageProcessor's PIL path (decode + convert + resize + crop + normalise) throughput on one
thread, the reference side of benches/preprocess.rs. Prints one JSON line per image."""

import argparse
import io
import json
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPImageProcessorPil


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("images", nargs="+", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    processor = CLIPImageProcessorPil.from_pretrained(args.model)
    for path in args.images:
        data = path.read_bytes()
        run = lambda: processor(images=Image.open(io.BytesIO(data)), return_tensors="pt")
        run()
        n, start = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - start < args.min_seconds:
            run()
            n += 1
        secs = (time.perf_counter() - start) / n
        print(json.dumps({"impl": "transformers", "image": path.name, "ms": secs * 1000}),
              flush=True)


if __name__ == "__main__":
    main()
