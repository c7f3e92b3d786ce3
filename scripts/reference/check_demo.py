"""Loads the shipped demo model with transformers and writes what it computes for a few texts and
fixture images to models/demo/reference.json, which tests/demo_model.rs compares with clipd.
Run it (with .venv-ref's python) after every retraining of the demo model."""

import json
import sys
from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

root = Path(__file__).resolve().parents[2]
model_dir = root / "models" / "demo"
images_dir = root / "tests" / "fixtures" / "images"
TEXTS = ["a photo of a red circle.", "a small blue star on a grey background", "green square",
         "a drawing of a triangle coloured purple", ""]
IMAGES = ["rgb_640x480.png", "q75_420_333x251.jpg", "rgba_300x200.png", "animated_160x120.gif"]

model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32).eval()
tokenizer = CLIPTokenizer.from_pretrained(model_dir)
processor = CLIPImageProcessorPil.from_pretrained(model_dir)
with torch.no_grad():
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    text = torch.nn.functional.normalize(model.get_text_features(**batch).pooler_output, dim=-1)
    images = {}
    for name in IMAGES:
        pv = processor(images=Image.open(images_dir / name), return_tensors="pt")["pixel_values"]
        emb = model.get_image_features(pixel_values=pv).pooler_output
        images[name] = torch.nn.functional.normalize(emb, dim=-1)[0].tolist()
out = {"texts": TEXTS, "text_embeddings": text.tolist(), "image_embeddings": images,
       "logit_scale": float(model.logit_scale.detach())}
(model_dir / "reference.json").write_text(json.dumps(out) + "\n")
print(f"wrote {model_dir / 'reference.json'}", file=sys.stderr)
