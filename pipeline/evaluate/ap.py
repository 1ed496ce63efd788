"""AP50 and AP50:95 per label with faster-coco-eval (COCO's own definition, computed in C++).

Each reviewed task a model_version predicted is one COCO image; its annotated boxes are the ground
truth, the predicted boxes the detections (an unscored box ranks as score 0). Only the "all" area
range is evaluated and every detection of an image counts (maxDets raised to the most boxes any
task has). A label with no annotated box has no AP (None).

Boxes are clipped to their image (``pipeline.evaluate.tasks``); with ``as_stored`` they are taken as Label
Studio stores them (``extra["as_stored"]``), unclipped, as pycocotools evaluates a COCO export: the two
differ only where a box reaches outside its image."""
from __future__ import annotations

from typing import Optional

import numpy as np
import supervision as sv
from faster_coco_eval import COCO, COCOeval_faster


def _quiet(*_args, **_kwargs) -> None:
    pass


def _mean_valid(a: np.ndarray) -> Optional[float]:
    a = a[a > -1]
    return float(a.mean()) if a.size else None


def _xyxy(d, as_stored: bool) -> np.ndarray:
    return d.extra.get("as_stored", d.xyxy) if as_stored else d.xyxy


def any_clipped(pairs: list[tuple[int, object, object]]) -> bool:
    """Whether any box of ``pairs`` was clipped to its image (so ``as_stored`` changes the figures)."""
    return any(not np.array_equal(_xyxy(d, True), d.xyxy) for _, pred, truth in pairs for d in (pred, truth))


def average_precision(pairs: list[tuple[int, object, object]], as_stored: bool = False) -> dict:
    """``pairs``: (image id, predicted Detections, annotated Detections) per task.

    Returns {"labels": {label: {"ap50", "ap50_95", "pr_curve"}}, "ap50", "ap50_95", "recall_points"} where
    ``pr_curve`` is COCO's interpolated precision at IoU 0.5 sampled at ``recall_points`` (None: no
    annotated box of the label) and the top-level APs are means over labels that have any."""
    has_truth, labels = set(), set()
    for _, pred, truth in pairs:
        has_truth.update(truth.labels.astype(str))
        labels.update(pred.labels.astype(str))
    labels = sorted(labels | has_truth)
    cat = {lab: i + 1 for i, lab in enumerate(labels)}
    images, gts, dts = [], [], []
    max_dets = 1
    for image_id, pred, truth in pairs:
        image_id = int(image_id)
        images.append({"id": image_id})
        max_dets = max(max_dets, len(pred))
        for box, lab in zip(sv.xyxy_to_xywh(_xyxy(truth, as_stored).astype(np.float64)).tolist(), truth.labels):
            gts.append({"id": len(gts) + 1, "image_id": image_id, "category_id": cat[str(lab)], "bbox": box,
                        "area": box[2] * box[3], "iscrowd": 0})
        scores = np.where(np.isnan(pred.scores), 0.0, pred.scores).tolist()
        for box, lab, score in zip(sv.xyxy_to_xywh(_xyxy(pred, as_stored).astype(np.float64)).tolist(), pred.labels,
                                   scores):
            dts.append({"image_id": image_id, "category_id": cat[str(lab)], "bbox": box, "score": score})
    recall_points = np.linspace(0.0, 1.0, 101)
    out = {"labels": {}, "ap50": None, "ap50_95": None, "recall_points": recall_points.round(2).tolist()}
    if not labels:
        return out
    if not dts:  # nothing detected: AP 0 where there was something to find
        for lab in labels:
            ap = 0.0 if lab in has_truth else None
            out["labels"][lab] = {"ap50": ap, "ap50_95": ap, "pr_curve": None if ap is None else [0.0] * 101}
    else:
        gt = COCO()
        gt.print_function = _quiet
        gt.dataset = {"images": images, "annotations": gts,
                      "categories": [{"id": i, "name": lab} for lab, i in cat.items()]}
        gt.createIndex()
        dt = gt.loadRes(dts)
        ev = COCOeval_faster(gt, dt, iouType="bbox", print_function=_quiet)
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
        ev.params.maxDets = [max(100, max_dets)]
        ev.params.recThrs = recall_points
        ev.evaluate()
        ev.accumulate()
        precision = np.asarray(ev.eval["precision"])  # [IoU thresholds, recall points, labels, areas, maxDets]
        for k, lab in enumerate(labels):
            p = precision[:, :, k, 0, -1]
            ap50 = _mean_valid(p[0])
            out["labels"][lab] = {"ap50": ap50, "ap50_95": _mean_valid(p), "pr_curve": None if ap50 is None else
                                  [round(float(v), 4) for v in np.maximum(p[0], 0.0)]}
    for key in ("ap50", "ap50_95"):
        vals = [v[key] for v in out["labels"].values() if v[key] is not None]
        out[key] = float(np.mean(vals)) if vals else None
    return out
