"""What every output control of a labeling config does: say whether a tag is its kind, map the
pipeline's labels onto the tag's labels, and turn one box of a ``Detections`` into its result.

A subclass names the tags it serves (``tags``) and builds the geometry (``value``); everything
else (label mapping, ids, scores, sizes) is here, so adding an output kind is one small file."""
from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from typing import ClassVar, Iterable, Optional

from pipeline.detections import Detections


def _aliases(label_tag) -> list[str]:
    raw = (getattr(label_tag, "attr", None) or {}).get("predicted_values", "") or ""
    return [a.strip() for a in raw.split(",") if a.strip()]


def build_label_map(control, names: Iterable[str]) -> dict[str, str]:
    """Map each of ``names`` to a label of ``control`` (a LabelInterface control tag).

    Order of preference: a ``predicted_values`` alias (exact, then case-insensitive), the label's
    own value (exact, then case-insensitive). Unmatched names are left out."""
    labels = dict(getattr(control, "labels_attrs", None) or {})
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    for ls_label, tag in labels.items():
        for alias in _aliases(tag):
            exact.setdefault(alias, ls_label)
            folded.setdefault(alias.casefold(), ls_label)
    own_exact = {lab: lab for lab in labels}
    own_folded: dict[str, str] = {}
    for lab in labels:
        own_folded.setdefault(lab.casefold(), lab)
    out = {}
    for name in names:
        for table, key in ((exact, name), (folded, name.casefold()), (own_exact, name), (own_folded, name.casefold())):
            if key in table:
                out[name] = table[key]
                break
    return out


def attr_true(control, name: str) -> bool:
    return str((getattr(control, "attr", None) or {}).get(name, "")).strip().lower() in ("true", "1", "yes")


def new_region_id() -> str:
    return uuid.uuid4().hex[:10]


class Control:
    """A control tag of the labeling config on one image."""
    tags: ClassVar[tuple[str, ...]] = ()  # lower-case Label Studio tag names this class serves

    def __init__(self, control):
        self.control = control
        self.name: str = control.name
        self.tag: str = control.tag.lower()
        self.to_name: str = control.to_name[0]
        self.labels: list[str] = list(getattr(control, "labels", None) or [])

    @classmethod
    def matches(cls, control) -> bool:
        return control.tag.lower() in cls.tags

    def __repr__(self) -> str:
        return f"<{self.control.tag} name={self.name!r}>"


class OutputControl(Control, ABC):
    """A geometry control (rectangles, brush masks, polygons) that gets one region per kept box."""
    needs_masks: ClassVar[bool] = False

    def __init__(self, control):
        super().__init__(control)
        self.labeled = self.tag.endswith("labels")
        self._map: dict[str, Optional[str]] = {}

    def label_for(self, label: str) -> Optional[str]:
        """This control's label for a pipeline label (alias or case-insensitive name), None when it has
        no such label. An unlabelled control (``<Rectangle>``) takes every box: its own name."""
        if not self.labeled:
            return label
        if label not in self._map:
            self._map[label] = build_label_map(self.control, [label]).get(label)
        return self._map[label]

    @abstractmethod
    def value(self, dets: Detections, i: int, width: int, height: int) -> Optional[dict]:
        """The geometry of box ``i`` in this control's value format (None: nothing to draw)."""

    def result(self, dets: Detections, i: int, label: Optional[str], width: int, height: int,
               score: Optional[float], region_id: Optional[str] = None) -> Optional[dict]:
        value = self.value(dets, i, width, height)
        if value is None:
            return None
        if self.labeled:
            value[self.tag] = [label] if label else []
        res = {"id": region_id or new_region_id(), "from_name": self.name, "to_name": self.to_name, "type": self.tag,
               "original_width": int(width), "original_height": int(height), "image_rotation": 0, "value": value}
        if score is not None:
            res["score"] = float(score)
        return res

    def geometry(self, result: dict) -> dict:
        """The geometry part of one of this control's results (for per-region results on it)."""
        return {k: v for k, v in result["value"].items() if k != self.tag}
