"""Synthetic calibration projects: reviewed tasks with the cascade's candidate boxes and their scores, drawn from
a known model, so the precision any thresholds give on new tasks is known exactly.

A ``ProjectModel`` says how many boxes a task holds (Poisson), which share of them the grounder proposes, how
many wrong candidates it adds (Poisson), and the Beta distributions of the grounding score and verify's
P(yes) of right and of wrong candidates. ``tasks(model, n, rng)`` draws reviewed tasks from it
(``calibrate.search.Reviewed``: a right candidate lies exactly on its annotated box, a wrong one far from
every box, so matching is never ambiguous); ``model.precision(g, v)`` is the precision of the boxes the
pipeline keeps at grounding threshold ``g`` and verify threshold ``v`` over all future tasks (the ratio of
expected right to expected kept boxes), ``model.recall(g, v)`` the share of annotated boxes they find."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from pipeline.calibrate.search import Reviewed
from pipeline.detections import Detections

SIDE, GAP = 40, 100  # boxes of SIDE px; annotated boxes in a row GAP px apart, wrong candidates far below them


@dataclass(frozen=True)
class ProjectModel:
    objects: float  # mean annotated boxes per task
    recall: float  # share of annotated boxes the grounder proposes
    false: float  # mean wrong candidates per task
    right_verify: tuple[float, float]  # Beta(a, b) of verify P(yes), right candidates
    wrong_verify: tuple[float, float]
    right_ground: tuple[float, float] = (4.0, 2.0)  # Beta(a, b) of the grounding score
    wrong_ground: tuple[float, float] = (2.0, 3.0)

    def _kept(self, g: float, v: float) -> tuple[float, float]:
        """Expected right and wrong boxes kept per task at thresholds (g, v) (a box at a threshold is kept)."""
        right = self.objects * self.recall * stats.beta.sf(g, *self.right_ground) * stats.beta.sf(v, *self.right_verify)
        wrong = self.false * stats.beta.sf(g, *self.wrong_ground) * stats.beta.sf(v, *self.wrong_verify)
        return float(right), float(wrong)

    def precision(self, g: float, v: float) -> float:
        right, wrong = self._kept(g, v)
        return right / (right + wrong) if right + wrong > 0 else 1.0

    def recall_at(self, g: float, v: float) -> float:
        return self._kept(g, v)[0] / self.objects


def random_model(rng: np.random.Generator) -> ProjectModel:
    """A project as they come: some with clean verify answers, some with confusable look-alikes."""
    return ProjectModel(objects=rng.uniform(0.5, 2.5), recall=rng.uniform(0.7, 0.95), false=rng.uniform(0.5, 3.0),
                        right_verify=(rng.uniform(2.0, 6.0), rng.uniform(0.8, 1.5)),
                        wrong_verify=(rng.uniform(1.0, 2.5), rng.uniform(1.5, 5.0)))


def tasks(model: ProjectModel, n: int, rng: np.random.Generator, label: str = "A", first_id: int = 1
          ) -> list[Reviewed]:
    """``n`` reviewed tasks drawn from ``model`` (the filter stage off)."""
    out = []
    for k in range(n):
        truths = int(rng.poisson(model.objects))
        found = rng.random(truths) < model.recall
        wrong = int(rng.poisson(model.false))
        xyxy = [[GAP * i, 0, GAP * i + SIDE, SIDE] for i in np.flatnonzero(found)]
        xyxy += [[GAP * i, 10 * GAP, GAP * i + SIDE, 10 * GAP + SIDE] for i in range(wrong)]
        m = int(found.sum())
        g = np.r_[rng.beta(*model.right_ground, m), rng.beta(*model.wrong_ground, wrong)]
        v = np.r_[rng.beta(*model.right_verify, m), rng.beta(*model.wrong_verify, wrong)]
        cand = Detections(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), scores=g, labels=[label] * len(g),
                          verify_scores=v)
        truth = Detections(xyxy=np.asarray([[GAP * i, 0, GAP * i + SIDE, SIDE] for i in range(truths)],
                                           np.float32).reshape(-1, 4), scores=[math.nan] * truths,
                           labels=[label] * truths)
        out.append(Reviewed(first_id + k, math.nan, cand, truth))
    return out
