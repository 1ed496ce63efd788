"""The stages, each a function of (provider, image, ...) so they can be tested with injected outputs."""
from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from pipeline.config import Thresholds
from pipeline.crops import crop
from pipeline.detections import Detections
from pipeline.providers.base import VLM, Grounder, YesNo

log = logging.getLogger(__name__)


def filter_image(vlm: VLM, image: Image.Image, question: str, threshold: float) -> tuple[bool, YesNo]:
    """Image-level YES/NO: does the image show the target at all?"""
    ans = vlm.yes_probability(image, question)
    return ans.p_yes >= threshold, ans


def ground(grounder: Grounder, image: Image.Image, query_labels: Mapping[str, str], th: Thresholds) -> Detections:
    """Text queries -> boxes, mapped to labels, score-thresholded, per-label NMS, capped at max_boxes."""
    queries = list(query_labels)
    dets = grounder.boxes(image, queries)
    if not len(dets):
        return dets
    dets.labels = np.array([query_labels.get(str(q), str(q)) for q in dets.queries], dtype=object)
    dets.clip_to(image.width, image.height)
    degenerate = (dets.xyxy[:, 2] - dets.xyxy[:, 0] < 1) | (dets.xyxy[:, 3] - dets.xyxy[:, 1] < 1)
    dets.drop(degenerate, "ground", "degenerate box (< 1 px after clipping)")
    low = ~np.isnan(dets.scores) & (dets.scores < th.grounding)
    dets.drop(low, "ground", f"grounding score < {th.grounding}")
    dets.apply_nms(th.nms_iou, "ground")
    idx = dets.active_index()
    if len(idx) > th.max_boxes:
        s = dets.scores[idx]
        order = np.argsort(-np.where(np.isnan(s), -np.arange(len(idx)), s), kind="stable") if not np.isnan(s).all() \
            else np.arange(len(idx))
        over = np.zeros(len(dets), bool)
        over[idx[order[th.max_boxes:]]] = True
        dets.drop(over, "ground", f"more than max_boxes={th.max_boxes}")
    return dets


def verify(vlm: VLM, image: Image.Image, dets: Detections, questions: Mapping[str, str], threshold: float,
           padding: float) -> list[dict]:
    """Ask the VLM about each kept box's padded crop (one batched call per question).

    Sets ``dets.verify_scores`` and drops boxes below ``threshold``. Returns the raw answers."""
    answers = []
    idx = dets.active_index()
    by_question: dict[str, list[int]] = {}
    for i in idx:
        by_question.setdefault(questions[str(dets.labels[i])], []).append(int(i))
    for question, members in by_question.items():
        crops = [crop(image, dets.xyxy[i], padding) for i in members]
        results = vlm.yes_probabilities(crops, question)
        if len(results) != len(members):
            raise RuntimeError(f"VLM returned {len(results)} answers for {len(members)} crops")
        for i, ans in zip(members, results):
            dets.verify_scores[i] = ans.p_yes
            answers.append({"box": i, "question": question, **ans.to_json()})
    low = ~np.isnan(dets.verify_scores) & (dets.verify_scores < threshold)
    dets.mark(np.isin(np.arange(len(dets)), idx), "verify")
    dets.drop(low, "verify", f"verify P(yes) < {threshold}")
    return answers


def user_boxes(xyxy: Sequence, labels: Sequence[str]) -> Detections:
    """Boxes drawn by a person (interactive mode): no grounder score."""
    n = len(labels)
    return Detections(xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4), scores=np.full(n, np.nan),
                      labels=list(labels), stage=["user"] * n)


def verify_questions(labels: Sequence[str], template: str, target_label: str, target_object: str) -> dict[str, str]:
    """Question per label: the target's own label asks about target_object, others about their name."""
    return {lab: template.format(target_object=target_object if lab == target_label else lab) for lab in labels}


def as_optional(x) -> Optional[float]:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)
