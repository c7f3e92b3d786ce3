"""Writes the reference fixtures that clipd's parity tests read (tests/fixtures/).

Two small random-weight CLIP checkpoints in Hugging Face layout, built and saved by `transformers`
with OpenAI's real BPE vocabulary, test images of many shapes, modes and formats, tricky texts,
and what `transformers` makes of them: token ids, preprocessed pixels (PIL path) and normalised
embeddings. Deterministic; run it with scripts/reference/make_fixtures.sh.
"""

import argparse
import gzip
import io
import json
import shutil
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.numpy import save_file
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]

# Two configs that differ in every dimension the model code reads. "a" looks like the original
# OpenAI uploads (legacy eos_token_id 2, integer sizes in preprocessor_config.json, f16 weights);
# "b" like a checkpoint saved by a current transformers (dict sizes, bf16 weights, own mean/std).
CHECKPOINTS = {
    "tiny-a": dict(
        seed=1,
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, hidden_act="quick_gelu", eos_token_id=2),
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, image_size=64, patch_size=8, hidden_act="quick_gelu"),
        projection_dim=24,
        dtype=torch.float16,
        preprocessor="legacy",
    ),
    "tiny-b": dict(
        seed=2,
        text=dict(hidden_size=16, intermediate_size=48, num_hidden_layers=3,
                  num_attention_heads=2, hidden_act="gelu", eos_token_id=49407,
                  layer_norm_eps=1e-6),
        vision=dict(hidden_size=36, intermediate_size=80, num_hidden_layers=3,
                    num_attention_heads=3, image_size=48, patch_size=16, hidden_act="gelu",
                    layer_norm_eps=1e-6),
        projection_dim=20,
        dtype=torch.bfloat16,
        preprocessor="modern",
    ),
}

TEXTS = [
    "",
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "a red circle on a grey background.",
    "Crème brûlée à la café, naïve façade",
    "cre\u0300me bru\u0302le\u0301e (decomposed accents)",
    "🐱🚀 party time 🎉🎉 👩‍👩‍👧",
    "一只猫的照片",
    "猫の写真です。東京タワー",
    "고양이 사진",
    "صورة قطة",
    "Фотография кошки",
    "  multiple   spaces\tand\nnewlines  ",
    "don't stop-believing!!! ... #hashtag @user",
    "3.14159 and 1,234,567 and 2026-11-27",
    "<|startoftext|>special tokens typed by a user<|endoftext|>",
    "&amp; &lt;html&gt; entities",
    "zero\u200bwidth\u200djoiners",
    "a" * 300,
    " ".join(["word"] * 75),
    " ".join(["word"] * 76),
    ("The quick brown fox jumps over the lazy dog. " * 60).strip(),
]


def bytes_to_unicode():
    """GPT-2/CLIP's reversible byte-to-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def clip_vocab_and_merges(bpe_gz: Path):
    """OpenAI's vocabulary construction from bpe_simple_vocab_16e6.txt.gz (49408 tokens)."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def find_bpe(wheel_dir: Path) -> Path:
    for wheel in sorted(wheel_dir.glob("open_clip_torch-*.whl")):
        with zipfile.ZipFile(wheel) as z:
            data = z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
        out = wheel_dir / "bpe_simple_vocab_16e6.txt.gz"
        out.write_bytes(data)
        return out
    raise SystemExit(f"no open_clip_torch wheel in {wheel_dir}")


def build_tokenizer(bpe_gz: Path, out_dir: Path) -> CLIPTokenizer:
    vocab, merges = clip_vocab_and_merges(bpe_gz)
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tok.save_pretrained(out_dir)
    return tok


def preprocessor_json(kind: str, size: int) -> dict:
    if kind == "legacy":
        return {
            "crop_size": size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": OPENAI_MEAN,
            "image_std": OPENAI_STD, "resample": 3, "size": size,
        }
    return {
        "crop_size": {"height": size, "width": size}, "do_center_crop": True,
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.45, 0.4], "image_std": [0.25, 0.3, 0.35],
        "image_processor_type": "CLIPImageProcessor", "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": size},
    }


def write_checkpoint(name: str, spec: dict, model_dir: Path, tokenizer_dir: Path):
    torch.manual_seed(spec["seed"])
    config = CLIPConfig(
        text_config=dict(spec["text"], vocab_size=49408, max_position_embeddings=77,
                         bos_token_id=49406, pad_token_id=49407),
        vision_config=spec["vision"], projection_dim=spec["projection_dim"],
    )
    model = CLIPModel(config).eval()
    # The default initialisation (std 0.02) makes every input look alike; wider weights give
    # embeddings far enough apart for a parity test to mean something.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 1.5 / p.shape[-1] ** 0.5)
            elif "layer_norm" in pname or "layrnorm" in pname or "layernorm" in pname:
                p.add_(torch.randn_like(p) * 0.1)
            elif pname != "logit_scale":
                p.normal_(0.0, 0.2)
    model.to(spec["dtype"]).save_pretrained(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    # transformers writes eos_token_id from its own value; the OpenAI uploads carry 2.
    cfg["text_config"]["eos_token_id"] = spec["text"]["eos_token_id"]
    (model_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    size = spec["vision"]["image_size"]
    (model_dir / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_json(spec["preprocessor"], size), indent=2) + "\n")
    link = model_dir / "tokenizer.json"
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(Path("..") / tokenizer_dir.name / "tokenizer.json")


# ---------------------------------------------------------------------------------------------
# Test images: content with edges, gradients and noise, so that a wrong filter, offset or
# channel order shows in the pixels.

def scene(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        127 + 120 * np.sin(x / max(w, 1) * 7 + seed),
        127 + 120 * np.cos(y / max(h, 1) * 5),
        (x + y) / max(w + h, 1) * 255,
    ], axis=-1)
    # Blocky noise: texture that tests the filter but that PNG still compresses.
    noise = rng.normal(0, 14, (h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)
    base += noise[:h, :w]
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, max(w, 2)), rng.integers(0, max(h, 2))
        x1, y1 = x0 + rng.integers(1, max(w // 2, 2)), y0 + rng.integers(1, max(h // 2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            d.ellipse([x0, y0, x1, y1], fill=colour)
    d.line([0, 0, w - 1, h - 1], fill=(255, 255, 255), width=max(1, min(w, h) // 20))
    return img


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_images() -> dict:
    """name -> encoded bytes. Sizes cover up- and downscaling, both pass orders of Pillow's
    resize, extreme aspect ratios and odd crops."""
    imgs = {}
    s = scene
    imgs["rgb_640x480.png"] = encode(s(640, 480, 1), "PNG")
    imgs["rgb_480x640.png"] = encode(s(480, 640, 2), "PNG")
    imgs["rgb_64x64.png"] = encode(s(64, 64, 3), "PNG")
    imgs["rgb_17x23_upscale.png"] = encode(s(17, 23, 4), "PNG")
    imgs["rgb_1x1.png"] = encode(s(1, 1, 5), "PNG")
    imgs["rgb_3x500_thin.png"] = encode(s(3, 500, 6), "PNG")
    imgs["rgb_900x200_wide.png"] = encode(s(900, 200, 7), "PNG")
    imgs["rgb_200x900_vertical_first.png"] = encode(s(200, 900, 8), "PNG")
    imgs["rgb_1000x999.png"] = encode(s(1000, 999, 9), "PNG")
    imgs["rgb_160x120.bmp"] = encode(s(160, 120, 28), "BMP")
    rgba = s(300, 200, 10).convert("RGBA")
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1)), "L")
    rgba.putalpha(alpha)
    imgs["rgba_300x200.png"] = encode(rgba, "PNG")
    imgs["l_250x180.png"] = encode(s(250, 180, 11).convert("L"), "PNG")
    la = s(180, 250, 12).convert("LA")
    imgs["la_180x250.png"] = encode(la, "PNG")
    imgs["p_palette_210x150.png"] = encode(s(210, 150, 13).quantize(64), "PNG")
    pt = s(150, 210, 14).quantize(32)
    pt.info["transparency"] = 3
    imgs["p_transparent_150x210.png"] = encode(pt, "PNG", transparency=3)
    g16 = (np.random.default_rng(15).integers(0, 600, (90, 120))).astype(np.uint16)
    imgs["i16_120x90.png"] = encode(Image.fromarray(g16), "PNG")
    g16t = g16.copy()
    g16t[20:60, 30:90] = 77  # a block of the transparent value
    imgs["i16_transparent_120x90.png"] = encode(Image.fromarray(g16t), "PNG", transparency=77)
    imgs["q90_444_320x240.jpg"] = encode(s(320, 240, 16), "JPEG", quality=90, subsampling=0)
    imgs["q75_420_333x251.jpg"] = encode(s(333, 251, 17), "JPEG", quality=75, subsampling=2)
    imgs["progressive_400x300.jpg"] = encode(s(400, 300, 18), "JPEG", quality=85,
                                             progressive=True)
    imgs["grey_256x128.jpg"] = encode(s(256, 128, 19).convert("L"), "JPEG", quality=90)
    imgs["cmyk_240x160.jpg"] = encode(s(240, 160, 29).convert("CMYK"), "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° to display": neither PIL nor clipd applies it
    imgs["exif_rotated_200x120.jpg"] = encode(s(200, 120, 30), "JPEG", quality=90, exif=exif)
    imgs["rgba_lossy_180x120.webp"] = encode(rgba.resize((180, 120)), "WEBP", quality=80)
    imgs["lossy_300x300.webp"] = encode(s(300, 300, 20), "WEBP", quality=80)
    imgs["lossless_150x100.webp"] = encode(s(150, 100, 21), "WEBP", lossless=True)
    frames = [s(160, 120, 22 + i).quantize(128) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    imgs["animated_160x120.gif"] = buf.getvalue()
    imgs["p_8bit_130x90.bmp"] = encode(s(130, 90, 25).quantize(100), "BMP")
    imgs["rgb_lzw_200x150.tiff"] = encode(s(200, 150, 26), "TIFF", compression="tiff_lzw")
    imgs["rgb_raw_99x77.tiff"] = encode(s(99, 77, 27), "TIFF")
    return imgs


LOSSLESS = {".png", ".bmp", ".gif", ".tiff"}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="tests/fixtures")
    ap.add_argument("--wheels", type=Path, required=True, help="folder with open_clip_torch wheel")
    args = ap.parse_args()
    torch.set_num_threads(1)

    out = args.out
    models = out / "models"
    ref = out / "reference"
    images_dir = out / "images"
    for d in (models, ref, images_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    tokenizer_dir = models / "tokenizer"
    tokenizer_dir.mkdir()
    tok = build_tokenizer(find_bpe(args.wheels), tokenizer_dir)
    for extra in tokenizer_dir.iterdir():
        if extra.name != "tokenizer.json":
            extra.unlink()

    ids = tok(TEXTS, truncation=True, max_length=77)["input_ids"]
    (ref / "texts.json").write_text(json.dumps(
        {"texts": TEXTS, "input_ids": ids,
         "truncated": [len(tok(t)["input_ids"]) > 77 for t in TEXTS]},
        ensure_ascii=False, indent=1) + "\n")

    images = test_images()
    for name, data in images.items():
        (images_dir / name).write_bytes(data)

    for name, spec in CHECKPOINTS.items():
        model_dir = models / name
        write_checkpoint(name, spec, model_dir, tokenizer_dir)
        model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32).eval()
        processor = CLIPImageProcessorPil.from_pretrained(model_dir)
        with torch.no_grad():
            batch = tok(TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
            text = model.get_text_features(**batch).pooler_output
            text = torch.nn.functional.normalize(text, dim=-1)
            pixels, image_embeds = {}, {}
            for img_name in images:
                pil = Image.open(images_dir / img_name)
                pv = processor(images=pil, return_tensors="pt")["pixel_values"]
                emb = model.get_image_features(pixel_values=pv).pooler_output
                pixels[img_name] = pv[0].numpy().astype(np.float32)
                image_embeds[img_name] = torch.nn.functional.normalize(emb, dim=-1)[0].tolist()
        save_file(pixels, str(ref / f"{name}-pixels.safetensors"))
        (ref / f"{name}.json").write_text(json.dumps({
            "text_embeddings": text.tolist(),
            "image_embeddings": image_embeds,
            "logit_scale": float(model.logit_scale),
        }) + "\n")
        sims = text @ text.T
        off = sims[~torch.eye(len(TEXTS), dtype=torch.bool)]
        print(f"{name}: text cosine between different texts: mean {off.mean():.3f} "
              f"max {off.max():.4f}")
    (ref / "images.json").write_text(json.dumps(
        {"lossless": [n for n in images if Path(n).suffix in LOSSLESS],
         "lossy": [n for n in images if Path(n).suffix not in LOSSLESS]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
