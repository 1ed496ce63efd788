"""Where a box's identity (identify's name for it) goes besides its geometry: a per-region
``<TextArea>`` (any name) or a per-region ``<Choices>`` (names among its choices). Each result
has the id of the region it names, so Label Studio shows it on that region."""
from __future__ import annotations

from typing import Optional

from pipeline.labelstudio.controls.base import Control, attr_true


class PerRegion(Control):
    key = ""  # the value key holding the answer

    @classmethod
    def matches(cls, control) -> bool:
        return super().matches(control) and attr_true(control, "perRegion")

    def takes(self, name: str) -> bool:
        return True

    def result(self, region: dict, geometry: dict, name: str, score: Optional[float]) -> dict:
        res = {"id": region["id"], "from_name": self.name, "to_name": self.to_name, "type": self.tag,
               "original_width": region["original_width"], "original_height": region["original_height"],
               "image_rotation": 0, "value": {**geometry, self.key: [name]}}
        if score is not None:
            res["score"] = float(score)
        return res


class NameText(PerRegion):
    """``<TextArea perRegion="true">``: the name as the region's text."""
    tags = ("textarea",)
    key = "text"


class NameChoice(PerRegion):
    """``<Choices perRegion="true">``: the name as the region's choice, when it is one of the choices."""
    tags = ("choices",)
    key = "choices"

    def takes(self, name: str) -> bool:
        return name in self.labels
