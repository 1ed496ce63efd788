"""Routing through the student: what the cascade is asked once the student has looked at an image.

The student (``route.student``, a YOLO detector trained on the project's reviewed labels) grounds every image
first. Each of its boxes, by its score ``s`` against its label's band (``Route.floor_for``/``accept_for``):

* ``s >= accept``: kept as it is (no foundation model is asked about it);
* ``floor <= s < accept``: in the band, it goes to verify (the VLM's P(yes) on its crop decides);
* ``s < floor``: dropped.

An image whose band holds more than ``route.max_uncertain`` boxes (with the verify stage off: any) is one the
student is unsure about: it goes through the whole cascade (filter, ground, verify) instead, and the student's
boxes are left out. ``decide`` makes that choice from the student's boxes alone; ``Pipeline.run`` acts on it
and counts the seconds each stage took (``student``, ``verify``, and the cascade's stages when it ran)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import LabelThresholds, Route, Thresholds
from pipeline.detections import Detections

STUDENT, CASCADE = "student", "cascade"


@dataclass
class Decision:
    path: str  # STUDENT or CASCADE
    accepted: np.ndarray  # indices of the student's boxes kept as they are
    band: np.ndarray  # indices of the boxes that go to verify
    dropped: np.ndarray  # indices of the boxes under the floor
    why: str = ""

    def to_dict(self) -> dict:
        return {"path": self.path, "accepted": len(self.accepted), "band": len(self.band),
                "dropped": len(self.dropped), "why": self.why}


def decide(dets: Detections, route: Route, verify_on: bool = True) -> Decision:
    """Where each of the student's active boxes goes, and whether the image needs the whole cascade."""
    idx = dets.active_index()
    scores = np.nan_to_num(dets.scores[idx].astype(np.float64), nan=0.0)
    accept = np.array([route.accept_for(lab) for lab in dets.labels[idx]], np.float64)
    floor = np.array([route.floor_for(lab) for lab in dets.labels[idx]], np.float64)
    accepted, band, dropped = idx[scores >= accept], idx[(scores >= floor) & (scores < accept)], idx[scores < floor]
    limit = route.max_uncertain if verify_on else 0
    if len(band) > limit:
        why = (f"{len(band)} student box(es) between floor and accept, more than max_uncertain={limit}"
               + ("" if verify_on else " (verify is off)"))
        return Decision(CASCADE, accepted, band, dropped, why)
    return Decision(STUDENT, accepted, band, dropped)


def certainty_thresholds(route: Route, th: Thresholds) -> Thresholds:
    """``th`` with each label's grounding threshold at its route ``accept``: a routed result's task score
    (pipeline/certainty.py) weighs the student's kept boxes against the score that kept them."""
    labels = set(th.per_label) | set(route.per_label)
    per_label = {lab: LabelThresholds(verify=th.verify_for(lab), grounding=route.accept_for(lab)) for lab in labels}
    return th.model_copy(update={"grounding": route.accept, "per_label": per_label})
