"""A few sample images drawn in code (no downloads), so `label-factory up` has something to label."""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from pipeline.atomic import save_atomic


def _octagon(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(math.pi / 8 + k * math.pi / 4), cy + r * math.sin(math.pi / 8 + k * math.pi / 4))
            for k in range(8)]


def _street(w: int, h: int, seed: int) -> Image.Image:
    im = Image.new("RGB", (w, h), (135 + seed * 7 % 40, 180, 230))
    d = ImageDraw.Draw(im)
    d.rectangle((0, int(h * 0.62), w, h), fill=(90, 90, 95))  # road
    d.rectangle((0, int(h * 0.58), w, int(h * 0.62)), fill=(170, 170, 160))  # kerb
    for x in range(0, w, 90):
        d.rectangle((x + 20, int(h * 0.8), x + 60, int(h * 0.82)), fill=(235, 235, 235))  # lane marks
    return im


def _stop_sign(im: Image.Image, cx: float, cy: float, r: float) -> tuple[float, float, float, float]:
    d = ImageDraw.Draw(im)
    d.rectangle((cx - r * 0.08, cy, cx + r * 0.08, im.height * 0.7), fill=(120, 120, 120))  # pole
    d.polygon(_octagon(cx, cy, r * 1.06), fill=(245, 245, 245))
    d.polygon(_octagon(cx, cy, r), fill=(200, 16, 30))
    font = ImageFont.load_default(size=max(8, int(r * 0.55)))
    tw = d.textlength("STOP", font=font)
    d.text((cx - tw / 2, cy - r * 0.32), "STOP", fill="white", font=font)
    return cx - r * 1.06, cy - r * 1.06, cx + r * 1.06, cy + r * 1.06


def _yield_sign(im: Image.Image, cx: float, cy: float, r: float) -> None:
    d = ImageDraw.Draw(im)
    d.rectangle((cx - r * 0.08, cy, cx + r * 0.08, im.height * 0.7), fill=(120, 120, 120))
    d.polygon([(cx - r, cy - r * 0.6), (cx + r, cy - r * 0.6), (cx, cy + r)], fill=(200, 16, 30))
    d.polygon([(cx - r * 0.6, cy - r * 0.38), (cx + r * 0.6, cy - r * 0.38), (cx, cy + r * 0.55)], fill="white")


SCENES = [  # (file name, size, stop signs as (cx, cy, r) in fractions of width, yield sign or None)
    ("stop-01-street.png", (640, 480), [(0.3, 0.35, 0.09)], None),
    ("stop-02-two-signs.png", (800, 500), [(0.2, 0.3, 0.07), (0.75, 0.38, 0.05)], None),
    ("stop-03-close-up.png", (480, 480), [(0.5, 0.42, 0.3)], None),
    ("stop-04-with-yield.png", (640, 400), [(0.7, 0.4, 0.08)], (0.25, 0.4, 0.08)),
    ("no-stop-05-yield-only.png", (640, 400), [], (0.5, 0.4, 0.1)),
]


def write_samples(out_dir: Path) -> list[Path]:
    """Draw the sample scenes into ``out_dir`` (idempotent) and return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, (w, h), signs, yld) in enumerate(SCENES):
        path = out_dir / name
        if not path.exists():
            im = _street(w, h, i)
            if yld:
                _yield_sign(im, yld[0] * w, yld[1] * h, yld[2] * w)
            for cx, cy, r in signs:
                _stop_sign(im, cx * w, cy * h, r * w)
            save_atomic(path, lambda f, im=im: im.save(f, format="PNG"))
        paths.append(path)
    return paths
