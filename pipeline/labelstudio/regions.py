"""Label Studio results -> ``Detections``: the regions of an annotation (webhooks, START_TRAINING) or
of an interactive request, each as a pixel box with its label, region id and, on request, its mask.

Per region (``value`` in percent of ``width`` x ``height``, the upright image):

* rectangle: the box that encloses it, rotation included (``coords.rect_to_xyxy``);
* polygon: the box around its points; mask: the polygon filled;
* brush: the box around its pixels; mask: the decoded RLE;
* keypoint: a zero-size box at the point (``extra["kind"] == "point"``), ``extra["positive"]``
  False for a negative click (Label Studio's ``is_positive`` on smart keypoints).

The label is the region's name from a per-region TextArea / Choices result with the same id when
there is one, else its first label. ``extra`` carries ``region_id``, ``from_name``, ``type``,
``kind`` (box / polygon / brush / point), ``origin`` (``prediction``, ``manual``, ...), ``positive``.
Malformed regions are skipped with a log line, never raised.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional

import numpy as np

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


def _label_of(item: dict) -> Optional[str]:
    value = item.get("value") or {}
    labels = value.get(str(item.get("type", "")).lower()) or value.get("labels") or []
    labels = [labels] if isinstance(labels, str) else labels
    return str(labels[0]) if labels else None


def _geometry(item: dict, kind: str, width: int, height: int, with_masks: bool):
    value = item.get("value") or {}
    if kind == "box":
        return coords.rect_to_xyxy(value, width, height), None
    if kind == "point":
        x, y = coords.point_to_pixel(value, width, height)
        return np.array([x, y, x, y], np.float32), None
    if kind == "polygon":
        pts = coords.percent_to_points(value.get("points") or [], width, height)
        if len(pts) < 3:
            raise ValueError("a polygon needs at least 3 points")
        mask = polygon_to_mask(pts, width, height) if with_masks else None
        box = np.clip(coords.polygon_to_xyxy(pts), 0, [width, height, width, height])
        return box.astype(np.float32), mask
    mask = rle_to_mask(value.get("rle") or [], width, height)
    if not mask.any():
        raise ValueError("an empty brush mask")
    return mask_box(mask), (mask if with_masks else None)


def read_regions(results: Iterable, width: int, height: int, with_masks: bool = False,
                 kinds: Optional[Iterable[str]] = None) -> Detections:
    """The geometry regions of ``results`` (only ``kinds`` of them when given) as Detections, in order."""
    results = [r for r in results or [] if isinstance(r, dict)]
    names = {str(r["id"]): n for r in results if r.get("id") and (n := name_of(r))}
    wanted = set(kinds) if kinds is not None else None
    rows, masks, extra = [], [], {k: [] for k in ("region_id", "from_name", "type", "kind", "origin", "positive")}
    for item in results:
        kind = KINDS.get(str(item.get("type", "")).lower())
        if kind is None or (wanted is not None and kind not in wanted):
            continue
        rid = str(item.get("id") or "")
        try:
            box, mask = _geometry(item, kind, width, height, with_masks)
        except (ValueError, TypeError) as e:
            log.info("region %s (%s): skipped: %s", rid or "?", item.get("type"), e)
            continue
        rows.append((box, names.get(rid) or _label_of(item) or ""))
        masks.append(mask)
        for key, v in (("region_id", rid), ("from_name", str(item.get("from_name") or "")),
                       ("type", str(item.get("type", "")).lower()), ("kind", kind),
                       ("origin", str(item.get("origin") or "")),
                       ("positive", item.get("is_positive", True) is not False)):
            extra[key].append(v)
    n = len(rows)
    return Detections(xyxy=np.array([r[0] for r in rows], np.float32).reshape(-1, 4), scores=np.full(n, np.nan),
                      labels=[r[1] for r in rows], stage=["user"] * n, masks=masks if with_masks else None,
                      extra=extra)
