"""``Detections`` -> COCO: pixel xyxy in the EXIF-corrected image <-> COCO ``[x, y, w, h]`` in pixels,
and a COCO dataset builder. A box with a mask gets its ``segmentation`` as COCO RLE (pycocotools) and
the mask's pixel count as its ``area``.

Label Studio results and coordinates live in ``pipeline.labelstudio``; ``xyxy_to_ls``, ``ls_to_xyxy``
and ``ls_results`` here are its rectangle converters under their old names, for code written before it
(``ls_to_xyxy`` now takes rotated rectangles: their enclosing box)."""
from __future__ import annotations

from typing import Mapping, Optional
from xml.sax.saxutils import quoteattr

import numpy as np

from pipeline.detections import Detections
from pipeline.labelstudio.coords import rect_to_xyxy as ls_to_xyxy  # noqa: F401 - the old name
from pipeline.labelstudio.coords import xyxy_to_rect as xyxy_to_ls  # noqa: F401 - the old name


def ls_results(dets: Detections, width: int, height: int, from_name: str, to_name: str,
               label_map: Optional[Mapping[str, str]] = None) -> list[dict]:
    """Kept boxes as ``rectanglelabels`` results of ``<RectangleLabels name=from_name toName=to_name>``
    (``pipeline.labelstudio.Layout`` for a real labeling config). ``label_map``: pipeline label -> config
    label; a box whose label is not in it is left out. Without a map labels pass unchanged."""
    from label_studio_sdk.label_interface import LabelInterface

    from pipeline.labelstudio import Layout
    active = [str(lab) for lab in dets.labels[dets.active_index()]]
    label_map = dict(label_map) if label_map is not None else {lab: lab for lab in active}
    keep = np.array([str(lab) in label_map for lab in dets.labels]) & dets.kept
    if not keep.any():
        return []
    mapped = dets[np.flatnonzero(keep)]
    mapped.relabel([label_map[str(lab)] for lab in mapped.labels])
    labels = "".join(f"<Label value={quoteattr(v)}/>" for v in dict.fromkeys(label_map.values()))
    layout = Layout.from_config(LabelInterface(
        config=f"<View><Image name={quoteattr(to_name)} value=\"$image\"/><RectangleLabels name={quoteattr(from_name)} "
               f"toName={quoteattr(to_name)}>{labels}</RectangleLabels></View>"))
    return layout.results(mapped, width, height)[0]


def xyxy_to_coco(xyxy) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_to_xyxy(bbox) -> np.ndarray:
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x, y, x + w, y + h], dtype=np.float32)


class CocoBuilder:
    """Accumulates images and kept detections into a COCO detection dict."""

    def __init__(self, labels: list[str]):
        self.categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(labels)]
        self._cat = {c["name"]: c["id"] for c in self.categories}
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add_image(self, file_name: str, width: int, height: int) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
        return image_id

    def add_detections(self, image_id: int, dets: Detections) -> None:
        scores = dets.final_scores()
        areas = dets.mask_areas()
        for i in dets.active_index():
            label = str(dets.labels[i])
            if label not in self._cat:
                self._cat[label] = len(self.categories) + 1
                self.categories.append({"id": self._cat[label], "name": label, "supercategory": "object"})
            bbox = xyxy_to_coco(dets.xyxy[i])
            ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": self._cat[label],
                   "bbox": [round(v, 2) for v in bbox], "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0}
            rle = dets.masks[i]
            if rle is not None:
                counts = rle["counts"]
                ann["segmentation"] = {"size": [int(v) for v in rle["size"]],
                                       "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
                ann["area"] = int(areas[i])
            if not np.isnan(scores[i]):
                ann["score"] = float(scores[i])
            self.annotations.append(ann)

    def to_dict(self) -> dict:
        return {"info": {"description": "label-factory predictions"}, "images": self.images,
                "annotations": self.annotations, "categories": self.categories}
