"""Compare model_versions against the reviewed labels of the same Label Studio tasks (COCO mAP).

Ground truth is what ``export`` would take (reviewed.py: each task's latest submitted, non-cancelled
annotation; pseudo-labels never count as truth). A model_version's detections are its latest
prediction per task, every box with its score (a box without one takes its prediction's score, else
1). Only tasks that have a reviewed annotation *and* a prediction of every compared version are
scored, so the numbers are side by side on the same tasks; ``task_ids`` narrows them further (e.g.
the test split of an export, whose tasks no student trained on).

Boxes are compared in Label Studio's percent coordinates scaled to the task's recorded
``original_width``/``original_height`` (IoU does not depend on the scale): no image is fetched.
AP comes from pycocotools' COCOeval (mAP50, mAP50-95, and AP50 per label)."""
from __future__ import annotations

import contextlib
import io
from typing import Iterable, Optional, Sequence

import numpy as np

from pipeline.convert import CocoBuilder, ls_to_xyxy
from pipeline.detections import Detections
from pipeline.distill import reviewed


def _size(regions: Sequence[reviewed.Region]) -> tuple[int, int]:
    return next((r.original_size for r in regions if r.original_size), (100, 100))


def _dets(regions: Sequence[reviewed.Region], size, labels: Sequence[str]) -> Detections:
    regions = [r for r in regions if r.label in labels]
    xyxy = [ls_to_xyxy(r.value, *size) for r in regions]
    return Detections(xyxy=np.array(xyxy, np.float32).reshape(-1, 4),
                      scores=[1.0 if r.score is None else r.score for r in regions], labels=[r.label for r in regions])


def compare(tasks: Iterable, from_name: str, data_key: str, versions: Sequence[str], labels: Sequence[str],
            task_ids: Optional[set] = None) -> dict:
    """mAP of each model_version on the tasks they all predicted and a person reviewed."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    tasks = [reviewed.as_dict(t) for t in tasks]
    truth = {ex.task_id: ex for ex in reviewed.examples(tasks, from_name, data_key)[0]}
    preds = {v: {} for v in versions}
    for t in tasks:
        for v in versions:
            p = reviewed.latest_prediction(t, v)
            if p is not None:
                preds[v][int(t["id"])] = reviewed.rectangles(p.get("result"), from_name, default_score=p.get("score"))
    common = set(truth).intersection(*(set(p) for p in preds.values()))
    if task_ids is not None:
        common &= {int(t) for t in task_ids}
    out = {"tasks": len(common), "reviewed": len(truth), "labels": list(labels),
           "predicted": {v: len(p) for v, p in preds.items()}, "versions": {}}
    if not common:
        return out
    gt = CocoBuilder(list(labels))
    image_ids = {}
    for tid in sorted(common):
        size = _size(truth[tid].regions) if truth[tid].regions else _size(next(iter(preds.values()))[tid])
        image_ids[tid] = (gt.add_image(f"{tid}", *size), size)
        gt.add_detections(image_ids[tid][0], _dets(truth[tid].regions, size, labels))
    for v in versions:
        dt = CocoBuilder(list(labels))
        for tid in sorted(common):
            dt.add_detections(image_ids[tid][0], _dets(preds[v][tid], image_ids[tid][1], labels))
        out["versions"][v] = _coco_ap(COCO, COCOeval, gt.to_dict(), dt.annotations, labels)
    return out


def _coco_ap(COCO, COCOeval, gt: dict, dt: list[dict], labels) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not dt:
            return {"mAP50": 0.0, "mAP50-95": 0.0, "boxes": 0, "per_class_AP50": {lab: 0.0 for lab in labels}}
        coco_dt = coco_gt.loadRes(dt)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = [1, 10, 1000]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][..., 0, -1]  # (IoU thresholds, recall points, classes), all areas, 1000 boxes

    def mean(p) -> Optional[float]:
        return float(p[p > -1].mean()) if (p > -1).any() else None  # -1: no ground truth for that class

    per_class = {labels[cat - 1]: mean(prec[0, :, k]) for k, cat in enumerate(ev.params.catIds)}
    return {"mAP50": mean(prec[0]) or 0.0, "mAP50-95": mean(prec) or 0.0, "boxes": len(dt),
            "per_class_AP50": per_class}
