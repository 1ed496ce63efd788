"""Label Studio result regions as its frontend and API serialize them, for the tests: one factory, ``region``,
and the rectangle in pixels, ``ls_rect``."""
from __future__ import annotations

# the result type that holds each kind's labels
TYPES = {"rect": "rectanglelabels", "rectangle": "rectanglelabels", "brush": "brushlabels",
         "polygon": "polygonlabels", "point": "keypointlabels"}


def region(kind: str, value: dict, label: str, *, rid: str = "r", from_name: str = "label", to_name: str = "image",
           size: tuple[int, int] | None = None, origin: str | None = None, score: float | None = None,
           **extra) -> dict:
    """One region: ``kind`` is a short name (rect, brush, polygon, point) or the result type itself; ``value``
    the coordinates in percent (its label list is added); ``size`` the image's (width, height), which Label
    Studio stores beside every region; ``origin`` and ``score`` only when given."""
    tag = TYPES.get(kind, kind)
    r = {"id": rid, "from_name": from_name, "to_name": to_name, "type": tag, "value": {**value, tag: [label]}}
    if size:
        r["original_width"], r["original_height"] = size
        r["image_rotation"] = 0
    if origin:
        r["origin"] = origin
    if score is not None:
        r["score"] = score
    r.update(extra)
    return r


def ls_rect(box, width, height, label, region_id, from_name="label", to_name="image") -> dict:
    """A rectangle from pixel corners (x1, y1, x2, y2) on a width × height image."""
    x1, y1, x2, y2 = box
    value = {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
             "height": 100 * (y2 - y1) / height, "rotation": 0}
    return region("rect", value, label, rid=region_id, from_name=from_name, to_name=to_name, size=(width, height))
