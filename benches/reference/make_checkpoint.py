"""Writes a random-weight checkpoint shaped like openai/clip-vit-base-patch32 (transformers'
CLIPConfig defaults are exactly that shape) for the benchmarks. Not committed: ~600 MB."""

import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

out = Path(sys.argv[1])
tokenizer = Path(sys.argv[2])
if (out / "model.safetensors").exists():
    sys.exit(0)
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
CLIPModel(CLIPConfig()).eval().save_pretrained(out)
shutil.copy(tokenizer, out / "tokenizer.json")
(out / "preprocessor_config.json").write_text(json.dumps({
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}))
