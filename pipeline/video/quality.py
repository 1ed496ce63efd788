"""Tracking quality of predicted tracks against true ones, frame by frame: MOTA and its parts (CLEAR),
IDF1 (identity) and HOTA, computed by the ``trackers`` package's evaluation (a re-implementation of
TrackEval's CLEAR, Identity and HOTA metrics).

Both sides are ``Detections`` with ``extra["frame"]`` (0-based) and an id per box: ``extra["track"]``
(predicted) and ``extra["object"]`` or ``extra["track"]`` (truth). Every frame from 0 to ``frames - 1``
counts, also the ones where neither side has a box. Labels are compared too: a predicted box only matches
a true box of the same label (its similarity is 0 otherwise)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import supervision as sv
from trackers.eval import compute_clear_metrics, compute_hota_metrics, compute_identity_metrics

from pipeline.detections import Detections

FIGURES = ("MOTA", "IDF1", "HOTA", "IDSW", "MOTP", "DetA", "AssA", "CLR_TP", "CLR_FN", "CLR_FP", "Frag", "IDP", "IDR")


def _ids(d: Detections, key: str) -> np.ndarray:
    if key in d.extra:
        return np.asarray(d.extra[key], int)
    return np.asarray(d.extra["track"], int)


def tracking_quality(truth: Detections, predicted: Detections, frames: Optional[int] = None,
                     iou: float = 0.5) -> dict:
    """MOTA, IDF1, HOTA and their parts (``FIGURES``) of ``predicted`` against ``truth``; ``iou`` is the match
    threshold of CLEAR and Identity (HOTA averages over thresholds 0.05..0.95 as it defines)."""
    t_frames = np.asarray(truth.extra["frame"], int)
    p_frames = np.asarray(predicted.extra["frame"], int)
    count = frames if frames is not None else int(max(t_frames.max(initial=-1), p_frames.max(initial=-1)) + 1)
    t_ids, p_ids = _ids(truth, "object"), _ids(predicted, "track")
    t_lab, p_lab = truth.labels.astype(str), predicted.labels.astype(str)
    gt_ids, tr_ids, sims = [], [], []
    t_order, p_order = np.argsort(t_frames, kind="stable"), np.argsort(p_frames, kind="stable")
    t_starts = np.searchsorted(t_frames[t_order], np.arange(count + 1))
    p_starts = np.searchsorted(p_frames[p_order], np.arange(count + 1))
    for f in range(count):
        ti = t_order[t_starts[f]:t_starts[f + 1]]
        pi = p_order[p_starts[f]:p_starts[f + 1]]
        gt_ids.append(t_ids[ti])
        tr_ids.append(p_ids[pi])
        if len(ti) and len(pi):
            s = sv.box_iou_batch(truth.xyxy[ti], predicted.xyxy[pi])
            s = np.where(t_lab[ti][:, None] == p_lab[pi][None, :], s, 0.0)
        else:
            s = np.zeros((len(ti), len(pi)))
        sims.append(s)
    clear = compute_clear_metrics(gt_ids, tr_ids, sims, threshold=iou)
    ident = compute_identity_metrics(gt_ids, tr_ids, sims, threshold=iou)
    hota = compute_hota_metrics(gt_ids, tr_ids, sims)
    merged = {**clear, **ident, **hota}
    out = {k: _plain(merged[k]) for k in FIGURES if k in merged}
    out.update(frames=count, true_boxes=int(len(truth)), predicted_boxes=int(len(predicted)),
               true_tracks=int(len(np.unique(t_ids))), predicted_tracks=int(len(np.unique(p_ids))))
    return out


def _plain(v):
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    return v
