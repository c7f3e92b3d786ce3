"""Writes a random-weight checkpoint shaped like openai/clip-vit-base-patch32 (transformers'
CLIPConfig defaults are exactly that shape) for the benchmarks. Not committed: ~600 MB."""

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "reference"))
from make_fixtures import preprocessor_json  # noqa: E402

import torch
from transformers import CLIPConfig, CLIPModel

out = Path(sys.argv[1])
tokenizer = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
# The image pipeline alone (scripts/bench-preprocess.sh), or everything.
(out / "preprocessor_config.json").write_text(json.dumps(preprocessor_json("legacy", 224)))
if len(sys.argv) > 3 and sys.argv[3] == "--preprocessor-only" or (out / "model.safetensors").exists():
    sys.exit(0)
torch.manual_seed(0)
CLIPModel(CLIPConfig()).eval().save_pretrained(out)
shutil.copy(tokenizer, out / "tokenizer.json")
