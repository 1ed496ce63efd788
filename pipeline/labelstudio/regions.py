"""Label Studio results -> ``Detections``: the regions of an annotation (webhooks, START_TRAINING) or
of an interactive request, each as a pixel box with its label, region id and, on request, its mask.

Per region (``value`` in percent of ``width`` x ``height``, the upright image):

* rectangle: the box that encloses it, rotation included (``coords.rect_to_xyxy``): a rotated
  rectangle is its enclosing axis-aligned box, never skipped;
* polygon: the box around its points; mask: the polygon filled;
* brush: the box around its pixels; mask: the decoded RLE. The RLE is decoded at the size Label
  Studio recorded with it (``original_width`` x ``original_height``) and its box (and mask) scaled to
  ``width`` x ``height`` when those differ;
* keypoint: a zero-size box at the point (``extra["kind"] == "point"``), ``extra["positive"]``
  False for a negative click (Label Studio's ``is_positive`` on smart keypoints).

Boxes are clipped to the image; a region with less than 1 px inside it is skipped. The label is the
region's name from a per-region TextArea / Choices result with the same id when there is one, else its
first label (``every_label``: one row per label). ``extra`` carries ``region_id``, ``from_name``,
``type``, ``kind`` (box / polygon / brush / point), ``origin`` (``prediction``, ``manual``, ...),
``positive``, ``index`` (the region's position in the results given) and ``as_stored`` (its enclosing
box as stored, not clipped to the image). Malformed regions are skipped with a log line, never raised.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional

import numpy as np
from PIL import Image

from pipeline.detections import Detections, mask_box
from pipeline.labelstudio import coords
from pipeline.labelstudio.masks import polygon_to_mask, rle_to_mask

log = logging.getLogger(__name__)

# origins of regions that came from predictions (moved ones too): in an interactive request's context they are
# already on the image, never what a person just drew
PREDICTED_ORIGINS = ("prediction", "prediction-changed")
KINDS = {"rectanglelabels": "box", "rectangle": "box", "polygonlabels": "polygon", "polygon": "polygon",
         "brushlabels": "brush", "brush": "brush", "keypointlabels": "point", "keypoint": "point"}


def name_of(item: dict) -> Optional[str]:
    """The text of a per-region TextArea result, or the first choice of a Choices result."""
    value = item.get("value") or {}
    kind = str(item.get("type", "")).lower()
    if kind == "textarea":
        texts = value.get("text") or []
        texts = [texts] if isinstance(texts, str) else texts
        return " ".join(t.strip() for t in texts if isinstance(t, str) and t.strip()) or None
    if kind == "choices":
        ch = value.get("choices") or []
        return str(ch[0]) if ch else None
    return None


def _labels_of(item: dict) -> list[str]:
    """The region's labels, in order ([""] when it has none)."""
    value = item.get("value") or {}
    labels = value.get(str(item.get("type", "")).lower()) or value.get("labels") or []
    labels = [labels] if isinstance(labels, str) else labels
    return [str(lab) for lab in labels] or [""]


def _geometry(item: dict, kind: str, width: int, height: int, with_masks: bool):
    """(box clipped to the image, box as stored, mask or None)."""
    value = item.get("value") or {}
    if kind == "box":
        stored = coords.rect_bounds(value, width, height)
        return coords.clip_box(stored, width, height), stored, None
    if kind == "point":
        x, y = coords.point_to_pixel(value, width, height)
        box = np.array([x, y, x, y], np.float32)
        return box, box, None
    if kind == "polygon":
        pts = coords.percent_to_points(value.get("points") or [], width, height)
        if len(pts) < 3:
            raise ValueError("a polygon needs at least 3 points")
        mask = polygon_to_mask(pts, width, height) if with_masks else None
        stored = coords.polygon_to_xyxy(pts)
        return coords.clip_box(stored, width, height), stored, mask
    rle_w, rle_h = _recorded_size(item) or (width, height)
    mask = rle_to_mask(value.get("rle") or [], rle_w, rle_h)
    if not mask.any():
        raise ValueError("an empty brush mask")
    box = mask_box(mask)
    if (rle_w, rle_h) != (width, height):  # the RLE is of the image Label Studio recorded: scale it
        box = (box * np.array([width / rle_w, height / rle_h] * 2)).astype(np.float32)
        if with_masks:
            mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    return box, box, (mask if with_masks else None)


def _recorded_size(item: dict) -> Optional[tuple[int, int]]:
    try:
        w, h = int(item.get("original_width") or 0), int(item.get("original_height") or 0)
    except (TypeError, ValueError):
        return None
    return (w, h) if w > 0 and h > 0 else None


def read_regions(results: Iterable, width: int, height: int, with_masks: bool = False,
                 kinds: Optional[Iterable[str]] = None, every_label: bool = False, scored: bool = False) -> Detections:
    """The geometry regions of ``results`` (only ``kinds`` of them when given) as Detections, in order;
    ``every_label``: a region with several labels (and no per-region name) once per label; ``scored``: each
    row's score is its region's ``score`` (NaN when it has none; without ``scored``, NaN)."""
    results = [r for r in results or [] if isinstance(r, dict)]
    names = {str(r["id"]): n for r in results if r.get("id") and (n := name_of(r))}
    wanted = set(kinds) if kinds is not None else None
    rows, masks = [], []
    extra = {k: [] for k in ("region_id", "from_name", "type", "kind", "origin", "positive", "index", "as_stored")}
    for index, item in enumerate(results):
        kind = KINDS.get(str(item.get("type", "")).lower())
        if kind is None or (wanted is not None and kind not in wanted):
            continue
        rid = str(item.get("id") or "")
        try:
            box, stored, mask = _geometry(item, kind, width, height, with_masks)
        except (ValueError, TypeError) as e:
            log.info("region %s (%s): skipped: %s", rid or "?", item.get("type"), e)
            continue
        name = names.get(rid)
        labels = [name] if name else (_labels_of(item) if every_label else [_labels_of(item)[0]])
        score = item.get("score") if scored else None
        for label in labels:
            rows.append((box, label, np.nan if score is None else float(score)))
            masks.append(mask)
            for key, v in (("region_id", rid), ("from_name", str(item.get("from_name") or "")),
                           ("type", str(item.get("type", "")).lower()), ("kind", kind),
                           ("origin", str(item.get("origin") or "")),
                           ("positive", item.get("is_positive", True) is not False), ("index", index),
                           ("as_stored", stored)):
                extra[key].append(v)
    n = len(rows)
    extra["as_stored"] = np.array(extra["as_stored"], np.float32).reshape(-1, 4)
    return Detections(xyxy=np.array([r[0] for r in rows], np.float32).reshape(-1, 4), scores=[r[2] for r in rows],
                      labels=[r[1] for r in rows], stage=["user"] * n, masks=masks if with_masks else None,
                      extra=extra)
