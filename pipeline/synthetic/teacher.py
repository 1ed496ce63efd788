"""A SIMULATED foundation cascade (filter -> ground -> verify) for the synthetic world: the ground truth perturbed
at stated rates, standing in for Falcon Perception + Qwen2.5-VL where no real weights exist. Its figures are a
simulation's and are printed as such; what the real models cost is estimated separately (pipeline/cost.py).

For one image (a truth record of ``project.write_world``):

* filter: P(yes) ~ Beta(``filter_right``) when the image holds an object, Beta(``filter_empty``) when not;
* ground: each true box is found with probability 1 - ``miss``, its label swapped for another class's with
  probability ``confusion``, each edge moved by N(0, ``jitter`` x the box's side); each look-alike is taken for
  the class it resembles with probability ``lookalike_rate``; ``false_per_image`` more boxes (Poisson) land
  anywhere. Like Falcon, the grounder gives no score;
* verify: a box's P(yes) ~ Beta(``verify_right``) when it lies on a true box of its label (IoU >= 0.5), else
  Beta(``verify_wrong``). ``verify_p`` answers for any box (a student's too), the same way every time.

Every draw is seeded by (``seed``, the scene, the box), so a run is repeatable and the same box always gets
the same answer."""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import supervision as sv

from pipeline.config import Thresholds
from pipeline.detections import Detections
from pipeline.synthetic.project import truth_detections
from pipeline.synthetic.shapes import CLASSES, RESEMBLES


@dataclass
class CascadeAnswer:
    filter_p: float
    candidates: Detections  # grounded boxes (no grounding score), verify P(yes) in verify_scores

    def kept(self, th: Thresholds) -> Detections:
        """What the cascade predicts at thresholds ``th`` (its filter, each label's verify), scored by P(yes)."""
        c = self.candidates
        if self.filter_p < th.filter or not len(c):
            return Detections.empty()
        keep = c.verify_scores >= np.array([th.verify_for(lab) for lab in c.labels], np.float32)
        return Detections(xyxy=c.xyxy[keep], scores=c.verify_scores[keep], labels=c.labels[keep])

    def calls(self, th: Thresholds) -> dict:
        """Model calls the cascade makes on this image: filter once; ground and one verify crop per candidate
        when the filter passes."""
        passed = self.filter_p >= th.filter
        return {"filter": 1, "ground": int(passed), "verify": len(self.candidates) if passed else 0}


@dataclass(frozen=True)
class Teacher:
    miss: float = 0.15
    confusion: float = 0.03
    jitter: float = 0.04
    lookalike_rate: float = 0.6
    false_per_image: float = 0.3
    filter_right: tuple = (8.0, 1.5)
    filter_empty: tuple = (1.5, 5.0)
    verify_right: tuple = (8.0, 1.5)
    verify_wrong: tuple = (1.5, 4.0)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def _rng(self, record: dict, *salt) -> np.random.Generator:
        key = hashlib.sha256(repr((self.seed, record["seed"], record["index"], *salt)).encode()).digest()
        return np.random.default_rng(int.from_bytes(key[:8], "little"))

    def verify_p(self, record: dict, box, label: str) -> float:
        """The simulated VLM's P(yes) that ``box`` (pixel xyxy) shows a ``label``."""
        truth = truth_detections(record)
        box = np.asarray(box, np.float32).reshape(1, 4)
        same = truth.labels.astype(str) == str(label)
        right = bool(same.any()) and float(sv.box_iou_batch(box, truth.xyxy[same]).max()) >= 0.5
        rng = self._rng(record, "verify", str(label), *np.round(box[0]).astype(int).tolist())
        return float(rng.beta(*(self.verify_right if right else self.verify_wrong)))

    def answer(self, record: dict) -> CascadeAnswer:
        rng = self._rng(record, "cascade")
        w, h = record["width"], record["height"]
        truth = truth_detections(record)
        filter_p = float(rng.beta(*(self.filter_right if len(truth) else self.filter_empty)))
        classes = list(CLASSES)
        boxes, labels = [], []
        for box, label in zip(truth.xyxy, truth.labels.astype(str)):
            if rng.random() < self.miss:
                continue
            if rng.random() < self.confusion:
                label = str(rng.choice([c for c in classes if c != label]))
            boxes.append(_jittered(box, self.jitter, rng, w, h))
            labels.append(label)
        for look in record.get("lookalikes", []):
            if rng.random() < self.lookalike_rate:
                boxes.append(_jittered(np.asarray(look["box"], np.float32), self.jitter, rng, w, h))
                labels.append(RESEMBLES[look["kind"]])
        for _ in range(int(rng.poisson(self.false_per_image))):
            side = math.sqrt(rng.uniform(0.01, 0.2) * w * h)
            x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
            boxes.append(np.array([x, y, x + side, y + side * rng.uniform(0.7, 1.3)], np.float32).clip(0, [w, h, w, h]))
            labels.append(str(rng.choice(classes)))
        xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
        verify = [self.verify_p(record, b, lab) for b, lab in zip(xyxy, labels)]
        return CascadeAnswer(filter_p, Detections(xyxy=xyxy, scores=[math.nan] * len(labels), labels=labels,
                                                  verify_scores=verify))


def _jittered(box: np.ndarray, jitter: float, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    bw, bh = box[2] - box[0], box[3] - box[1]
    out = box + rng.normal(0, jitter, 4) * np.array([bw, bh, bw, bh])
    out = np.clip(out, 0, [w, h, w, h])
    if out[2] - out[0] < 2 or out[3] - out[1] < 2:
        return box.copy()
    return out.astype(np.float32)
