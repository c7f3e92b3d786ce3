"""Minimal PNG encoder (zlib + struct, no Pillow) for examples and tests: draws what the bundled
demo model knows, a coloured shape on a white background."""

import struct
import zlib

BACKGROUND = (245, 245, 245)
RED, GREEN, BLUE = (220, 30, 35), (35, 170, 60), (35, 70, 220)


def encode_png(width, height, pixel):
    """An 8-bit RGB PNG; pixel(x, y) -> (r, g, b)."""
    rows = (b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def solid_png(rgb, side=64):
    return encode_png(side, side, lambda x, y: rgb)


def square_png(rgb, side=64):
    """A square of `rgb`, 5/8 of the side, centred."""
    half = side * 5 / 16
    c = side / 2
    inside = lambda x, y: abs(x + 0.5 - c) <= half and abs(y + 0.5 - c) <= half
    return encode_png(side, side, lambda x, y: rgb if inside(x, y) else BACKGROUND)


def circle_png(rgb, side=64):
    """A disc of `rgb`, 3/4 of the side across, centred."""
    r, c = side * 3 / 8, side / 2
    inside = lambda x, y: (x + 0.5 - c) ** 2 + (y + 0.5 - c) ** 2 <= r * r
    return encode_png(side, side, lambda x, y: rgb if inside(x, y) else BACKGROUND)
