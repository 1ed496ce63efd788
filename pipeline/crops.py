"""Box crops for verify/identify: padded by a fraction of the box size, clamped at the border, optionally
downscaled to a pixel budget.  Boxes are in original-image pixels; a ``Photo`` cuts them from its working
resolution (see pipeline.images)."""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
from PIL import Image

from pipeline.images import Photo


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


def crop(image: Union[Image.Image, Photo], xyxy, padding: float = 0.0,
         max_pixels: Optional[int] = None) -> Image.Image:
    """The padded box ``xyxy`` (original pixels) of ``image``, at most ``max_pixels`` (None: as is)."""
    photo = Photo.of(image)
    return photo.region(padded_box(xyxy, photo.width, photo.height, padding), max_pixels)
