"""Box crops for verify/identify: padded by a fraction of the box size, clamped at the border."""
from __future__ import annotations

import numpy as np
from PIL import Image


def padded_box(xyxy, width: int, height: int, padding: float) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    px, py = (x2 - x1) * padding, (y2 - y1) * padding
    l = int(np.floor(max(0.0, x1 - px)))
    t = int(np.floor(max(0.0, y1 - py)))
    r = int(np.ceil(min(float(width), x2 + px)))
    b = int(np.ceil(min(float(height), y2 + py)))
    # never an empty crop: at least one pixel inside the image
    l, t = min(l, width - 1), min(t, height - 1)
    return l, t, max(r, l + 1), max(b, t + 1)


def crop(image: Image.Image, xyxy, padding: float = 0.0) -> Image.Image:
    return image.crop(padded_box(xyxy, image.width, image.height, padding))
