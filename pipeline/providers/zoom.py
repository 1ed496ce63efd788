"""Zoom refinement: a detector's box fitted again on a window around it, seen at the detector's full input size.

A detector that letterboxes the whole photo to a small square (the student at 256 px) sees a 110 px object
of a 1280 x 960 photo as 22 px, so its box edges land a few original pixels off — enough to miss the IoU an
annotator accepts as it is (0.8 in benchmarks/loop.py) and cost a redraw. ``refine`` crops a square window
of ``factor`` times the box's longer side around each box scoring at least ``min_score`` (at least
``min_side`` px: the detector's input size, so a small object is seen at its own resolution), predicts again
on every window in one batch, and moves the box to the same-label box of the window that overlaps it most
(IoU >= ``MATCH_IOU``). A box whose window would cover the photo's shorter side gains nothing and is left as
it is, as is a box its window finds no match for. Scores and labels stay the detector's.

The factor keeps the object at the scale the detector learned: at 4 the box spans a quarter of the window
(about 6 % of its area, inside the 1-40 % the synthetic world draws); at 2 it spans half, larger than most
training objects, and the refit got worse in the loop's measurements (docs/guides/loop.md)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import supervision as sv
from PIL import Image

from pipeline.detections import Detections

MATCH_IOU = 0.5  # the window's box is the same object from this IoU with the box it refines


def windows(xyxy: np.ndarray, size: tuple[int, int], factor: float, min_side: int) -> list[tuple[int, int, int]]:
    """(x0, y0, side) of each box's square window, inside the photo; side 0: no window (it would cover the
    photo's shorter side)."""
    w, h = size
    out = []
    for x1, y1, x2, y2 in np.asarray(xyxy, np.float64).reshape(-1, 4):
        side = int(round(max(factor * max(x2 - x1, y2 - y1), min_side)))
        if side >= min(w, h):
            out.append((0, 0, 0))
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x0 = int(round(min(max(cx - side / 2, 0), w - side)))
        y0 = int(round(min(max(cy - side / 2, 0), h - side)))
        out.append((x0, y0, side))
    return out


def refine(image: Image.Image, dets: Detections, predict: Callable[[Sequence[Image.Image]], list[Detections]],
           factor: float, min_side: int, min_score: float) -> Detections:
    """``dets`` (found on ``image``) with each box scoring >= ``min_score`` refitted on its window;
    ``predict`` answers a list of windows with their boxes in window pixels."""
    if factor <= 0 or not len(dets):
        return dets
    todo = np.flatnonzero(dets.scores >= min_score)
    wins = windows(dets.xyxy[todo], image.size, factor, min_side)
    todo, wins = [i for i, win in zip(todo, wins) if win[2]], [win for win in wins if win[2]]
    if not todo:
        return dets
    found = predict([image.crop((x0, y0, x0 + side, y0 + side)) for x0, y0, side in wins])
    xyxy = dets.xyxy.copy()
    for i, (x0, y0, _), got in zip(todo, wins, found):
        same = np.flatnonzero(got.labels == dets.labels[i])
        if not len(same):
            continue
        boxes = got.xyxy[same] + np.array([x0, y0, x0, y0], np.float32)
        iou = sv.box_iou_batch(dets.xyxy[i:i + 1], boxes)[0]
        if iou.max() >= MATCH_IOU:
            xyxy[i] = boxes[int(iou.argmax())]
    return Detections(xyxy=xyxy, scores=dets.scores, labels=dets.labels, queries=dets.queries)
