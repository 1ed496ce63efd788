"""Masks <-> Label Studio's brush RLE and polygons.

* Brush: Label Studio stores a brush region as its own RLE of the RGBA bitmap of the whole image
  (``original_width`` x ``original_height``, 4 bytes per pixel, row-major); label-studio-sdk
  encodes and decodes it (``label_studio_sdk.converter.brush``). Exact, holes included.
* Polygon: the outline of the mask's largest connected part (OpenCV contours), simplified with
  Douglas-Peucker (``cv2.approxPolyDP``) until at most ``MAX_POLYGON_POINTS`` vertices remain,
  starting from a tolerance of ``POLYGON_TOLERANCE`` px. A Label Studio polygon has no holes and
  one outline, so holes and the smaller parts of a mask are not in it.

Polygon vertices are the centres of the boundary pixels (image coordinates, like boxes: pixel
``i`` spans ``[i, i + 1)``), so the outline of an unsimplified contour, filled
(``polygon_to_mask``), gives back exactly the pixels of a hole-free mask.
"""
from __future__ import annotations

import cv2
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle

MAX_POLYGON_POINTS = 100
POLYGON_TOLERANCE = 1.0  # px: Douglas-Peucker tolerance to start from


def mask_to_rle(mask) -> list[int]:
    """(H, W) mask -> Label Studio brush RLE (list of bytes)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    return mask2rle(np.where(m.astype(bool), 255, 0).astype(np.uint8))


def rle_to_mask(rle, width: int, height: int) -> np.ndarray:
    """Label Studio brush RLE -> (H, W) bool (the alpha channel of the decoded RGBA bitmap)."""
    flat = decode_rle(rle)
    if flat.size != width * height * 4:
        raise ValueError(f"brush RLE holds {flat.size} values, not {width}x{height}x4: "
                         "original_width/original_height do not match it")
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def outline(mask, max_points: int = MAX_POLYGON_POINTS, tolerance: float = POLYGON_TOLERANCE) -> np.ndarray:
    """The outline of the mask's largest part as (K, 2) float32 vertices in image coordinates (a
    pixel's centre is its index + 0.5), K <= max_points (K = 0: an empty mask, or one whose largest
    part is too thin to outline)."""
    m = np.ascontiguousarray(np.asarray(mask, bool).astype(np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2), np.float32)
    largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    pts = largest
    eps = float(tolerance)
    if eps > 0 or len(pts) > max_points:
        pts = cv2.approxPolyDP(largest, eps, True)
        while len(pts) > max_points:
            eps *= 1.5
            pts = cv2.approxPolyDP(largest, eps, True)
    pts = pts.reshape(-1, 2).astype(np.float32) + 0.5  # pixel index -> its centre in image coordinates
    return pts if len(pts) >= 3 else np.zeros((0, 2), np.float32)


def polygon_to_mask(points, width: int, height: int) -> np.ndarray:
    """Polygon (K, 2) in image coordinates -> (H, W) bool: the pixels whose centres it covers, its
    edges included."""
    m = np.zeros((height, width), np.uint8)
    p = np.round(np.asarray(points, np.float64).reshape(-1, 2) - 0.5).astype(np.int32)
    if len(p) >= 3:
        cv2.fillPoly(m, [p], 1)
    return m.astype(bool)
