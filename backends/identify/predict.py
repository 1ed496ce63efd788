"""Identified boxes -> Label Studio results, placed by what the labeling config has.

For each box, in order of preference:

1. a per-region ``TextArea`` on the image (``perRegion="true"``): the rectangle keeps its own
   label and a TextArea result with the same region id carries the identity;
2. a per-region ``Choices`` that has the identity as a choice: same, as a Choices result;
3. a ``RectangleLabels`` with the identity among its labels (``predicted_values`` aliases
   honoured): the rectangle is labeled with the identity;
4. otherwise (unknown, or a name the config does not have) the rectangle keeps its own label.

The score of a result is the cosine to the nearest reference; an "unknown" region gets no
identity result at all (the person sees the box, unnamed)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from pipeline.convert import xyxy_to_ls
from pipeline.identify.index import Match


@dataclass
class Layout:
    to_name: str  # the Image object
    data_key: str  # task["data"] key of its URL
    rect_name: Optional[str]  # RectangleLabels (or Rectangle) control
    rect_type: str  # "rectanglelabels" | "rectangle"
    rect_labels: list
    text_name: Optional[str] = None  # per-region TextArea
    choices_name: Optional[str] = None  # per-region Choices
    choices: tuple = ()
    rect_control: object = None


def _per_region(ctl) -> bool:
    return str((ctl.attr or {}).get("perRegion", "")).lower() == "true"


def layout_of(interface) -> Layout:
    """Where identities go in this labeling config (a label_studio_sdk LabelInterface)."""
    images = [o for o in interface.objects if o.tag.lower() == "image"]
    if not images:
        raise ValueError("the labeling config has no <Image> to identify objects in")
    image = images[0]
    key = str(image.value or "$image").lstrip("$")
    lay = Layout(image.name, key, None, "rectangle", [])
    for ctl in interface.controls:
        if image.name not in (ctl.to_name or []):
            continue
        tag = ctl.tag.lower()
        if tag in ("rectanglelabels", "rectangle") and lay.rect_name is None:
            lay.rect_name, lay.rect_type = ctl.name, tag
            lay.rect_labels, lay.rect_control = list(getattr(ctl, "labels", []) or []), ctl
        elif tag == "textarea" and _per_region(ctl) and lay.text_name is None:
            lay.text_name = ctl.name
        elif tag == "choices" and _per_region(ctl) and lay.choices_name is None:
            lay.choices_name, lay.choices = ctl.name, tuple(getattr(ctl, "labels", []) or [])
    if lay.rect_name is None:
        raise ValueError("the labeling config has no RectangleLabels/Rectangle on the image")
    return lay


def identity_results(lay: Layout, boxes, box_labels: Sequence[Optional[str]], matches: Sequence[Match],
                     width: int, height: int, label_map: Optional[dict] = None,
                     box_scores: Optional[Sequence[Optional[float]]] = None) -> list[dict]:
    """Label Studio results for boxes (pixel xyxy) and their identify matches.

    ``label_map``: identity -> config label for the RectangleLabels (e.g. from
    ``LabelStudioMLBase.build_label_map``); by default exact names.
    ``box_scores``: the rectangle's own score (e.g. verify's P(yes)) for a box whose
    RectangleLabels label is *not* the identity (unknown, or the identity sits in a per-region
    TextArea/Choices); by default every rectangle is scored with the cosine."""
    out = []
    common = {"to_name": lay.to_name, "original_width": int(width), "original_height": int(height),
              "image_rotation": 0}
    own_scores = list(box_scores) if box_scores is not None else [None] * len(box_labels)
    for box, own, m, own_score in zip(np.asarray(boxes).reshape(-1, 4), box_labels, matches, own_scores):
        rid = uuid.uuid4().hex[:10]
        score = None if m is None or np.isnan(m.cosine) else float(m.cosine)
        ident = m.label if m is not None and m.known else None
        value = xyxy_to_ls(box, width, height)
        rect_label = own
        placed_elsewhere = False
        extra = []
        if ident and lay.text_name:
            extra.append({"id": rid, "from_name": lay.text_name, "type": "textarea", **common,
                          "value": {**value, "text": [ident]}})
            placed_elsewhere = True
        elif ident and lay.choices_name and ident in lay.choices:
            extra.append({"id": rid, "from_name": lay.choices_name, "type": "choices", **common,
                          "value": {**value, "choices": [ident]}})
            placed_elsewhere = True
        on_rect = False  # the rectangle's label is the identity
        if ident and not placed_elsewhere:
            mapped = (label_map or {}).get(ident, ident if ident in lay.rect_labels else None)
            if mapped:
                rect_label, on_rect = mapped, True
        rect = {"id": rid, "from_name": lay.rect_name, "type": lay.rect_type, **common, "value": dict(value)}
        if lay.rect_type == "rectanglelabels":
            if not rect_label or (lay.rect_labels and rect_label not in lay.rect_labels):
                rect_label = lay.rect_labels[0] if lay.rect_labels else rect_label
            rect["value"]["rectanglelabels"] = [rect_label] if rect_label else []
        rect_score = score if (box_scores is None or on_rect) else own_score
        if rect_score is not None and not np.isnan(rect_score):
            rect["score"] = float(rect_score)
        if score is not None:
            for e in extra:
                e["score"] = score
        if m is not None:  # what the index answered (also for "unknown"), shown as the region's meta
            margin = None if np.isnan(m.margin) else round(float(m.margin), 4)
            text = f"{m.label} cos={score if score is None else round(score, 3)} margin={margin}"
            if own_score is not None and not np.isnan(own_score):
                text += f" box={round(float(own_score), 3)}"
            rect["meta"] = {"text": [text]}
        out.append(rect)
        out.extend(extra)
    return out
