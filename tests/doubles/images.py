"""Image factories for the tests: patterned and coloured images as PIL images or encoded bytes (JPEG with EXIF
orientations, a decompression-bomb PNG), identify's distinct 'cards' and scenes holding them, sign photos
for the Label Studio uploads."""
from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw


def card(seed: int, size=(96, 136)) -> Image.Image:
    r = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(x) for x in r.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(7):
        x0, y0 = int(r.integers(0, size[0] - 16)), int(r.integers(0, size[1] - 16))
        box = (x0, y0, x0 + int(r.integers(10, 50)), y0 + int(r.integers(10, 50)))
        (d.ellipse if r.integers(0, 2) else d.rectangle)(box, fill=tuple(int(x) for x in r.integers(0, 255, 3)))
    return im


def scene(items, size=(320, 260), background=(128, 128, 128)) -> tuple[Image.Image, list]:
    """Paste (image, x, y, scale) items on a canvas; returns the scene and each item's pixel xyxy."""
    canvas = Image.new("RGB", size, background)
    boxes = []
    for im, x, y, scale in items:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        canvas.paste(im, (x, y))
        boxes.append([x, y, x + im.width, y + im.height])
    return canvas, boxes


def jpeg_bytes(size=(64, 48), color=(200, 30, 30), exif_orientation=None) -> bytes:
    return jpeg(Image.new("RGB", size, color), exif_orientation or 1, quality=75)


# -- images ---------------------------------------------------------------------------------
def pattern_image(seed: int, size=(160, 120)) -> Image.Image:
    """A blocky random RGB picture; different seeds give far-apart perceptual hashes."""
    rng = random.Random(seed)
    small = Image.new("RGB", (8, 6))
    small.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(48)])
    return small.resize(size, Image.NEAREST)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png(im: Image.Image) -> bytes:
    return encode(im, "PNG")


def jpeg(im: Image.Image, orientation: int = 1, quality: int = 95) -> bytes:
    """JPEG bytes; an ``orientation`` other than 1 is written into the EXIF data (the pixels are not turned)."""
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    return encode(im, "JPEG", quality=quality, exif=exif.tobytes())


def bomb_png(side: int = 10_000) -> bytes:
    """100 MP of one colour: a few KB on the wire, ~300 MB if decoded to RGB."""
    return encode(Image.new("1", (side, side)), "PNG", optimize=True)


IMAGE_SIZE = (96, 64)  # the end-to-end tests' uploads


def sign_jpeg(seed: int, size=IMAGE_SIZE) -> bytes:
    """A small JPEG with a red octagon on a coloured background (distinct bytes per seed)."""
    im = Image.new("RGB", size, (40 + seed * 30, 90, 120))
    ImageDraw.Draw(im).regular_polygon((size[0] // 2, size[1] // 2, 18), 8, fill=(200, 20, 20))
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()

