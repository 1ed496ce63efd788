"""Label Studio coordinates <-> pixels, both ways, in one place.

Label Studio measures a region in percent of the image as a person sees it (EXIF orientation
applied) and records that image's pixel size as ``original_width`` / ``original_height``; the
pipeline works in pixels of the same upright image. So a converter needs only the upright size.

* Rectangle: ``x``, ``y`` (top-left corner), ``width``, ``height`` in percent; ``rotation`` in
  degrees, clockwise on screen, about the top-left corner, applied to the rectangle in pixels
  (a percent of the width and a percent of the height are different lengths).
* Keypoint: ``x``, ``y`` in percent (its ``width`` is the drawn dot's size, not an extent).
* Polygon: ``points``, a list of ``[x, y]`` in percent.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np


def xyxy_to_rect(xyxy, width: int, height: int) -> dict:
    """Pixel box -> Label Studio rectangle value (no rotation)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return {"x": 100.0 * x1 / width, "y": 100.0 * y1 / height,
            "width": 100.0 * (x2 - x1) / width, "height": 100.0 * (y2 - y1) / height, "rotation": 0}


def rect_corners(value: Mapping, width: int, height: int) -> np.ndarray:
    """The rectangle's four corners in pixels, (4, 2), clockwise from its top-left corner."""
    try:
        x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
        w, h = float(value["width"]) * width / 100.0, float(value["height"]) * height / 100.0
        a = math.radians(float(value.get("rotation") or 0.0))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a Label Studio rectangle value: {dict(value)!r} ({type(e).__name__}: {e})") from None
    if not all(math.isfinite(v) for v in (x, y, w, h, a)):
        raise ValueError(f"not a Label Studio rectangle value: {dict(value)!r} (non-finite numbers)")
    c, s = math.cos(a), math.sin(a)
    return np.array([[x, y], [x + w * c, y + w * s], [x + w * c - h * s, y + w * s + h * c], [x - h * s, y + h * c]],
                    dtype=np.float64)


def rect_bounds(value: Mapping, width: int, height: int) -> np.ndarray:
    """Pixel box (float32 xyxy) that encloses a Label Studio rectangle, rotated or not, as stored: not clipped."""
    pts = rect_corners(value, width, height)
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], np.float32)


def clip_box(box, width: int, height: int) -> np.ndarray:
    """A pixel box clipped to the image (float32); ValueError when less than 1 px of it is inside."""
    box = np.clip(np.asarray(box, np.float64), 0, [width, height, width, height]).astype(np.float32)
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        raise ValueError(f"less than 1 px of it is inside the {width}x{height} image")
    return box


def rect_to_xyxy(value: Mapping, width: int, height: int) -> np.ndarray:
    """Pixel box (float32 xyxy) that encloses a Label Studio rectangle, rotated or not, clipped to the
    image. Raises ValueError for a malformed value or a box with less than 1 px left inside the image."""
    try:
        return clip_box(rect_bounds(value, width, height), width, height)
    except ValueError as e:
        raise ValueError(f"the rectangle {dict(value)!r}: {e}") from None


def point_to_pixel(value: Mapping, width: int, height: int) -> np.ndarray:
    """A keypoint value -> pixel (x, y), clipped to the image."""
    try:
        x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a Label Studio keypoint value: {dict(value)!r} ({type(e).__name__}: {e})") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"not a Label Studio keypoint value: {dict(value)!r}")
    return np.array([min(max(x, 0.0), width - 1e-3), min(max(y, 0.0), height - 1e-3)], dtype=np.float32)


def points_to_percent(points, width: int, height: int) -> list[list[float]]:
    """Pixel (K, 2) -> Label Studio polygon ``points`` (percent, clipped to [0, 100])."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    pct = np.clip(p * (100.0 / np.array([width, height])), 0.0, 100.0)
    return [[float(x), float(y)] for x, y in pct]


def percent_to_points(points, width: int, height: int) -> np.ndarray:
    """Label Studio polygon ``points`` -> pixel (K, 2) float32."""
    try:
        p = np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as e:
        raise ValueError(f"not a Label Studio polygon: {points!r} ({e})") from None
    if not np.isfinite(p).all():
        raise ValueError(f"not a Label Studio polygon: {points!r} (non-finite numbers)")
    return (p * (np.array([width, height]) / 100.0)).astype(np.float32)


def polygon_to_xyxy(points_px) -> np.ndarray:
    p = np.asarray(points_px, np.float32).reshape(-1, 2)
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()], np.float32)
