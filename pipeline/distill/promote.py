"""Train a student and decide whether it replaces the one being served: held-out AP, measured the same way for both.

* ``held_out(data, split)``: the images and true boxes of one split of a ``label-factory export --format yolo``
  (the ``test`` split by default: reviewed tasks the student never trains on);
* ``score(weights, held)``: the student's AP50 and AP50:95 there, per label and overall, computed like
  ``label-factory evaluate`` computes them (pipeline/evaluate/ap.py; every box the student gives, scored);
* ``train_and_score(cfg, held)``: ``train.train`` into the run folder, then ``score`` of its weights, added to
  its metrics.json under ``held_out``;
* ``promote(candidate, served)``: the rule: promote only if the candidate's held-out AP (AP50:95 by default)
  beats the served student's on the same images, by more than ``min_gain``; nothing served yet: promote (any
  student, even one with no held-out figure yet, over none).
  ``served`` must be scored on the same held-out images now, not taken from its own model card."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from pipeline.detections import Detections
from pipeline.distill.export import MANIFEST

METRIC = "ap50_95"


@dataclass
class HeldOut:
    images: list  # image paths
    truth: list  # Detections per image
    classes: list

    def __len__(self) -> int:
        return len(self.images)


def held_out(data: Path, split: str = "test") -> HeldOut:
    """The images and true boxes of ``split`` of a YOLO export (boxes back in pixels from the label files)."""
    data = Path(data)
    manifest = json.loads((data / MANIFEST).read_text())
    classes = list(manifest["classes"])
    images, truth = [], []
    for f in manifest["files"]:
        if f["split"] != split:
            continue
        w, h = f["width"], f["height"]
        rows = [line.split() for line in (data / f["labels"]).read_text().splitlines() if line.strip()]
        a = np.array([[float(v) for v in r[1:5]] for r in rows], np.float64).reshape(-1, 4)
        xyxy = np.c_[(a[:, 0] - a[:, 2] / 2) * w, (a[:, 1] - a[:, 3] / 2) * h,
                     (a[:, 0] + a[:, 2] / 2) * w, (a[:, 1] + a[:, 3] / 2) * h]
        truth.append(Detections(xyxy=xyxy, scores=[math.nan] * len(rows), labels=[classes[int(r[0])] for r in rows]))
        images.append(data / f["file"])
    return HeldOut(images, truth, classes)


def score(weights, held: HeldOut, device: str = "cpu") -> dict:
    """AP50 and AP50:95 of the student at ``weights`` on ``held`` (overall: the mean over labels)."""
    from pipeline.evaluate.ap import average_precision
    from pipeline.images import open_image
    from pipeline.providers.student import StudentGrounder
    student = StudentGrounder(str(weights), device=device)
    pairs = [(i, student.boxes(open_image(Path(p).read_bytes())), t) for i, (p, t) in enumerate(zip(held.images,
                                                                                                     held.truth))]
    ap = average_precision(pairs)
    return {"images": len(held), "ap50": ap["ap50"], "ap50_95": ap["ap50_95"],
            "labels": {lab: {k: v[k] for k in ("ap50", "ap50_95")} for lab, v in ap["labels"].items()}}


def train_and_score(cfg, held: HeldOut, callbacks: Optional[dict] = None) -> dict:
    """Train a student (``train.TrainConfig``) into its run folder and score it on ``held``; returns the run's
    metrics.json, which now holds ``held_out`` too."""
    from pipeline.atomic import save_text
    from pipeline.distill.train import METRICS, train
    metrics = train(cfg, callbacks=callbacks)
    out = Path(cfg.out).resolve()
    metrics["held_out"] = score(out / metrics["weights"], held, "cpu" if cfg.device == "cpu" else "auto")
    save_text(out / METRICS, json.dumps(metrics, indent=1))
    return metrics


def promote(candidate: dict, served: Optional[dict], metric: str = METRIC, min_gain: float = 0.0
            ) -> tuple[bool, str]:
    """(promote?, why) for two ``score`` results on the same held-out images."""
    new = candidate.get(metric)
    if served is None:
        return True, "nothing is served yet" + ("" if new is None else f"; the candidate's held-out {metric} is "
                                                                        f"{new:.3f}")
    if new is None:
        return False, f"the candidate has no held-out {metric} (no true box in the held-out images)"
    if served.get("images") != candidate.get("images"):
        return False, (f"not comparable: the candidate was scored on {candidate.get('images')} images, the served "
                       f"student on {served.get('images')}")
    old = served.get(metric) or 0.0
    if new > old + min_gain:
        return True, f"held-out {metric} {new:.3f} beats the served {old:.3f}"
    return False, f"held-out {metric} {new:.3f} does not beat the served {old:.3f}" + (
        f" by more than {min_gain:g}" if min_gain else "")
