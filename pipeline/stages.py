"""The stages, each a function of (provider, image, ...) so they can be tested with injected outputs.

Each stage hands its model at most its pixel budget (``budgets`` in the project YAML): the filter a
downscaled view of the whole image, the grounder, the "find similar" finder and the segmenter another
(``ground_pixels``, counted as the square of the longest side for a model that pads to a square), verify
each crop.  Boxes, points and masks are always in pixels of the ORIGINAL image: what a model answers about
its view is mapped back exactly (``pipeline.images.View``)."""
from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import supervision as sv
from PIL import Image

from pipeline.config import Thresholds
from pipeline.crops import crop
from pipeline.detections import Detections, encode_mask, mask_box
from pipeline.images import Photo, View
from pipeline.providers.base import VLM, Grounder, Segmenter, YesNo

log = logging.getLogger(__name__)


AnyImage = Union[Image.Image, Photo]


def filter_image(vlm: VLM, image: AnyImage, question: str, threshold: float,
                 max_pixels: Optional[int] = None) -> tuple[bool, YesNo]:
    """Image-level YES/NO: does the image show the target at all? (asked of a view of <= max_pixels)"""
    ans = vlm.yes_probability(Photo.of(image).view(max_pixels).image, question)
    return ans.p_yes >= threshold, ans


def _view(image: AnyImage, max_pixels: Optional[int], model) -> View:
    """The view ``model`` gets: at most ``max_pixels``, counted as the square of the longest side for a model
    that pads to a square (``square_input``: OWLv2 would otherwise pad a 4000 x 27 strip to 4000 x 4000)."""
    return Photo.of(image).view(max_pixels, square=getattr(model, "square_input", False))


def from_view(dets: Detections, view: View) -> Detections:
    """Detections a model found in ``view`` -> the same boxes (and masks) in original pixels."""
    if view.identity or not len(dets):
        return dets
    masks = [None if rle is None else encode_mask(view.mask_out(dets.mask(i))) for i, rle in enumerate(dets.masks)]
    return Detections(view.boxes_out(dets.xyxy), dets.scores, dets.labels, dets.queries, dets.kept, dets.stage,
                      dets.reason, dets.verify_scores, masks, dets.identities, dets.extra)


def ground(grounder: Grounder, image: AnyImage, query_labels: Mapping[str, str], th: Thresholds,
           masks: bool = False, max_pixels: Optional[int] = None) -> Detections:
    """Text queries -> boxes, mapped to labels, score-thresholded, per-label NMS, capped at max_boxes.

    ``masks``: ask a grounder that segments as it grounds (``Grounder.gives_masks``, e.g. Falcon) for
    each box's mask too; other grounders' boxes get theirs in the segment stage.  The grounder sees a
    view of at most ``max_pixels``."""
    queries = list(query_labels)
    view = _view(image, max_pixels, grounder)
    dets = grounder.segment(view.image, queries) if masks and grounder.gives_masks \
        else grounder.boxes(view.image, queries)
    dets = from_view(dets, view)
    if not len(dets):
        return dets
    dets.relabel([query_labels.get(str(q), str(q)) for q in dets.queries])
    return select(dets, image, th)


def similar(finder: Grounder, image: AnyImage, example_xyxy, label: str, th: Thresholds,
            max_pixels: Optional[int] = None) -> Detections:
    """"Find more like this": boxes in ``image`` that look like the example box a person drew, labelled
    ``label``, thresholded, NMS'd and capped like grounded boxes. The example itself (a box overlapping
    it by more than ``nms_iou``) is dropped: the person already has it.  The finder sees a view of at
    most ``max_pixels``."""
    view = _view(image, max_pixels, finder)
    dets = from_view(finder.similar(view.image, view.boxes_in(example_xyxy)[0]), view)
    if not len(dets):
        return dets
    dets.relabel([label] * len(dets))
    dets.mark(np.ones(len(dets), bool), "similar")
    ex = np.asarray(example_xyxy, np.float32).reshape(1, 4)
    dets.drop(sv.box_iou_batch(dets.xyxy, ex)[:, 0] > th.nms_iou, "similar", "the example itself")
    return select(dets, image, th, stage="similar")


def select(dets: Detections, image: AnyImage, th: Thresholds, stage: str = "ground") -> Detections:
    """Clip to the image, drop degenerate and low-scoring boxes, per-label NMS, cap at max_boxes."""
    dets.clip_to(image.width, image.height)
    degenerate = (dets.xyxy[:, 2] - dets.xyxy[:, 0] < 1) | (dets.xyxy[:, 3] - dets.xyxy[:, 1] < 1)
    dets.drop(degenerate, stage, "degenerate box (< 1 px after clipping)")
    drop_below(dets, dets.scores, [th.grounding_for(lab) for lab in dets.labels], stage, "grounding score")
    dets.apply_nms(th.nms_iou, stage)
    idx = dets.active_index()
    if len(idx) > th.max_boxes:
        s = dets.scores[idx]
        order = np.argsort(-np.where(np.isnan(s), -np.arange(len(idx)), s), kind="stable") if not np.isnan(s).all() \
            else np.arange(len(idx))
        over = np.zeros(len(dets), bool)
        over[idx[order[th.max_boxes:]]] = True
        dets.drop(over, stage, f"more than max_boxes={th.max_boxes}")
    return dets


def drop_below(dets: Detections, scores: np.ndarray, thresholds: Sequence[float], stage: str, what: str) -> None:
    """Drop the kept boxes whose score is below their own threshold (a NaN score is never below)."""
    thresholds = np.asarray(thresholds, np.float64).reshape(-1)
    low = ~np.isnan(scores) & (scores < thresholds)
    for t in np.unique(thresholds[low]):
        dets.drop(low & (thresholds == t), stage, f"{what} < {float(t)}")


def verify(vlm: VLM, image: AnyImage, dets: Detections, questions: Mapping[str, str],
           threshold: Union[float, Thresholds], padding: float, drop: bool = True,
           max_pixels: Optional[int] = None) -> list[dict]:
    """Ask the VLM about each kept box's padded crop, at most ``max_pixels`` each (one batched call per
    question).

    Sets ``dets.verify_scores`` and, with ``drop``, drops boxes below ``threshold`` (a number, or each box's
    label's ``Thresholds.verify_for``; boxes a person drew are only scored). Returns the raw answers."""
    answers = []
    idx = dets.active_index()
    by_question: dict[str, list[int]] = {}
    for i in idx:
        by_question.setdefault(questions[str(dets.labels[i])], []).append(int(i))
    for question, members in by_question.items():
        crops = [crop(image, dets.xyxy[i], padding, max_pixels) for i in members]
        results = vlm.yes_probabilities(crops, question)
        if len(results) != len(members):
            raise RuntimeError(f"VLM returned {len(results)} answers for {len(members)} crops")
        dets.set_verify_scores(members, [ans.p_yes for ans in results])
        answers += [{"box": i, "question": question, **ans.to_json()} for i, ans in zip(members, results)]
    dets.mark(np.isin(np.arange(len(dets)), idx), "verify")
    if drop:
        per_box = [threshold.verify_for(lab) if isinstance(threshold, Thresholds) else threshold for lab in dets.labels]
        drop_below(dets, dets.verify_scores, per_box, "verify", "verify P(yes)")
    return answers


def masks_for_boxes(segmenter: Segmenter, image: AnyImage, xyxy, max_pixels: Optional[int] = None
                    ) -> tuple[list[dict], np.ndarray]:
    """The segmenter's mask for each original-pixel box, asked on a view of <= max_pixels: the masks as
    RLE at the original size (one full-size plane at a time) and the (N, 4) original-pixel box of each."""
    view = _view(image, max_pixels, segmenter)
    found = segmenter.masks_for_boxes(view.image, view.boxes_in(xyxy))
    boxes = view.boxes_out([mask_box(m) for m in found]) if len(found) else np.zeros((0, 4))
    return [encode_mask(view.mask_out(m)) for m in found], boxes


def mask_for_points(segmenter: Segmenter, image: AnyImage, points, positive, max_pixels: Optional[int] = None
                    ) -> tuple[Optional[dict], np.ndarray]:
    """The one object under the clicks (original pixels), asked on a view of <= max_pixels: its mask as RLE
    at the original size (None when empty) and its original-pixel box."""
    view = _view(image, max_pixels, segmenter)
    mask, _quality = segmenter.mask_for_points(view.image, view.points_in(points), positive)
    if not np.asarray(mask).any():
        return None, np.zeros(4)
    return encode_mask(view.mask_out(mask)), view.boxes_out(mask_box(mask))[0]


def segment(segmenter: Optional[Segmenter], image: AnyImage, dets: Detections,
            max_pixels: Optional[int] = None) -> None:
    """A mask for every kept box that has none yet (the grounder may have given some, e.g. Falcon).

    Box prompts go to ``segmenter`` in one batch per image (its image embedding computed once). A kept
    box left with an empty mask, or with none because there is no segmenter, is dropped with the
    reason: a brush or polygon output has nothing to draw for it."""
    need = dets.kept & ~dets.has_mask()
    idx = np.flatnonzero(need)
    if len(idx) and segmenter is not None:
        masks, _ = masks_for_boxes(segmenter, image, dets.xyxy[idx], max_pixels)
        dets.set_masks(idx, masks)
        dets.mark(need, "segment")
        dets.drop(need & ~dets.has_mask(), "segment", "segment: empty mask for the box")
    elif len(idx):
        dets.drop(need, "segment", "segment: the grounder gave no mask for the box and no segmenter is set")


def user_boxes(xyxy: Sequence, labels: Sequence[str], masks: Optional[Sequence] = None) -> Detections:
    """Boxes a person gave (interactive mode), with their masks if any: no grounder score."""
    n = len(labels)
    return Detections(xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4), scores=np.full(n, np.nan),
                      labels=list(labels), stage=["user"] * n, masks=masks)


def verify_questions(labels: Sequence[str], template: str, target_label: str, target_object: str) -> dict[str, str]:
    """Question per label: the target's own label asks about target_object, others about their name."""
    return {lab: template.format(target_object=target_object if lab == target_label else lab) for lab in labels}
