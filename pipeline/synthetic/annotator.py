"""A SIMULATED annotator: reviews a task's predicted boxes against the world's truth and says how long it took.

Each predicted box is paired with the truth the way ``evaluate`` pairs a prediction with an annotation
(pipeline/evaluate/matching.py, greedy by score, IoU 0.5 to match, ``keep_iou`` to keep as is), and handled:

* **kept**: same label, IoU >= ``keep_iou``: verified as it is (its predicted coordinates stay);
* **moved**: same label, 0.5 <= IoU < ``keep_iou``: fixed to the true box;
* **relabeled**: another label's box at IoU >= 0.5: the label is changed (and the box fixed when it is off);
* **deleted**: nothing there: removed;

and each true box no prediction matched is **drawn** (at the true box). The annotation therefore holds every
true box once, kept boxes at their predicted coordinates. ``lead_time`` is the sum of per-action costs
(``Costs``), plus a look at the image; "drawing everything" is that look plus one draw per true box.

Published per-action costs (the defaults; each is a flag of benchmarks/loop.py):

* verifying a box (yes/no): 1.6 s (Papadopoulos, Uijlings, Keller, Ferrari, "We don't need no bounding-boxes",
  CVPR 2016);
* drawing a box: 7.0 s by extreme clicking (Papadopoulos et al., "Extreme clicking for efficient object
  annotation", ICCV 2017, which reports 7 s per box against ~35 s for the classic protocol); the classic
  protocol of Su, Deng, Fei-Fei ("Crowdsourcing annotations for visual object detection", AAAI HCOMP workshop
  2012) took 25.5 s to draw a box, 34.5 s with its quality verification, 42.4 s with the coverage check too;
* moving, relabeling, deleting and looking at the image have no published figure here: a move is priced as a
  redraw (7.0 s), a relabel as two verifications (3.2 s: is it X? no; pick Y), a delete as a verification
  answered no (1.6 s), the look at the image as one verification (1.6 s: is anything missing?). Assumptions,
  stated as such.

``Costs()`` prices drawing by extreme clicking (``EXTREME_CLICKING``); ``CLASSIC`` prices drawing and fixing a
box as the classic protocol does (25.5 s), the way Label Studio's rectangle tool draws."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.detections import Detections
from pipeline.evaluate.matching import ADDED, DELETED, KEPT, MOVED, RELABELED, match_boxes

ACTIONS = (KEPT, MOVED, RELABELED, DELETED, ADDED)


@dataclass(frozen=True)
class Costs:
    verify: float = 1.6  # a kept box: Papadopoulos et al. 2016
    draw: float = 7.0  # a missing box: extreme clicking, Papadopoulos et al. 2017 (classic: 25.5 s, Su et al. 2012)
    move: float = 7.0  # assumed: a redraw
    relabel: float = 3.2  # assumed: two verifications
    delete: float = 1.6  # assumed: a verification answered no
    image: float = 1.6  # assumed: one look for anything missing, per image

    def to_dict(self) -> dict:
        return asdict(self)


EXTREME_CLICKING = Costs()  # drawing (and fixing) a box by extreme clicking: 7.0 s
CLASSIC = Costs(draw=25.5, move=25.5)  # drawing (and fixing) a box the classic way, as Label Studio's tool does


@dataclass
class Review:
    annotation: Detections  # what the annotator submits (every true box once)
    counts: dict = field(default_factory=dict)  # action -> boxes
    seconds: float = 0.0  # lead_time
    from_scratch: float = 0.0  # the same image with every box drawn

    @property
    def share(self) -> float:
        """Seconds spent as a share of drawing everything."""
        return self.seconds / self.from_scratch if self.from_scratch else 1.0


def review(pred: Detections, truth: Detections, costs: Costs = Costs(), keep_iou: float = 0.9) -> Review:
    """What the simulated annotator does with ``pred`` (the kept boxes shown in Label Studio) on an image whose
    true boxes are ``truth``."""
    pred = pred.active()
    records = match_boxes(pred, truth, match_iou=0.5, keep_iou=keep_iou)
    counts = {a: 0 for a in ACTIONS}
    seconds = costs.image
    xyxy, labels = [], []
    for r in records:
        counts[r.outcome] += 1
        if r.outcome == KEPT:
            seconds += costs.verify
            xyxy.append(pred.xyxy[r.pred_index])
        elif r.outcome == MOVED:
            seconds += costs.move
        elif r.outcome == RELABELED:
            seconds += costs.relabel + (costs.move if r.iou < keep_iou else 0.0)
        elif r.outcome == DELETED:
            seconds += costs.delete
        else:
            seconds += costs.draw
        if r.outcome in (MOVED, RELABELED, ADDED):
            xyxy.append(truth.xyxy[r.truth_index])
        if r.outcome != DELETED:
            labels.append(r.truth_label)
    annotation = Detections(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), scores=[np.nan] * len(labels),
                            labels=labels)
    return Review(annotation, counts, round(seconds, 3), round(costs.image + costs.draw * len(truth), 3))
