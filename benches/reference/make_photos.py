"""Writes photo-sized benchmark images (JPEG 1920x1080 and 4032x3024, PNG 1024x768) into a
folder, deterministic. Not committed."""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for name, (w, h), fmt in [("photo_1920x1080.jpg", (1920, 1080), "JPEG"),
                          ("photo_4032x3024.jpg", (4032, 3024), "JPEG"),
                          ("photo_1024x768.png", (1024, 768), "PNG")]:
    path = out / name
    if path.exists():
        continue
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BICUBIC).filter(ImageFilter.DETAIL)
    img.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
