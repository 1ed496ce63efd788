"""Where predictions go in a labeling config, and pipeline labels -> config labels."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

from label_studio_sdk.label_interface import LabelInterface

from backends.base.errors import LabelConfigError  # raised when the config has no place for the boxes (422)
from backends.base.labels import build_label_map
from pipeline.config import ProjectConfig

log = logging.getLogger(__name__)


@dataclass
class Target:
    from_name: str  # the RectangleLabels control
    to_name: str  # the Image object
    data_key: str  # task["data"] key of the image URL
    labels: list[str]  # the control's labels
    label_map: dict[str, str]  # pipeline label -> config label
    default_label: str  # config label for the project's target (interactive text prompts)
    prompt_name: Optional[str] = None  # a TextArea on the same image, if any
    control: object = field(default=None, repr=False)  # the LabelInterface control tag
    _inverse: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for pipe, conf in self.label_map.items():
            self._inverse.setdefault(conf, pipe)

    def pipeline_label(self, config_label: str) -> str:
        """The pipeline label a config label comes from (the config label itself if none)."""
        return self._inverse.get(config_label, config_label)

    def with_identity(self) -> dict[str, str]:
        """label_map that also passes config labels through (for boxes labelled in Label Studio)."""
        return {**{lab: lab for lab in self.labels}, **self.label_map}

    def label_for_text(self, text: str) -> str:
        """Config label for a typed prompt: an alias or label name it matches, else the default label."""
        return build_label_map(self.control, [text]).get(text, self.default_label)

    def unmapped(self, labels) -> list[str]:
        return sorted({str(lab) for lab in labels} - set(self.label_map))


def is_per_region(control) -> bool:
    return str((getattr(control, "attr", None) or {}).get("perRegion", "")).lower() == "true"


def find_target(label_interface: LabelInterface, cfg: ProjectConfig) -> Target:
    if label_interface is None:
        raise LabelConfigError("no labeling config: Label Studio sent none and none is cached for this project")
    try:
        from_name, to_name, data_key = label_interface.get_first_tag_occurence("RectangleLabels", "Image")
    except ValueError:
        raise LabelConfigError("the labeling config has no <RectangleLabels> on an <Image>: nothing to put boxes in "
                               "(generate one with `label-factory config --project P`)") from None
    control = label_interface.get_control(from_name)
    labels = list((control.labels_attrs or {}).keys())
    label_map = build_label_map(control, cfg.labels())
    if not label_map:
        log.warning("no project label (%s) matches a label of <RectangleLabels name=%r> (%s): "
                    "every box will be dropped",
                    ", ".join(cfg.labels()), from_name, ", ".join(labels))
    default = label_map.get(cfg.label) or (labels[0] if labels else cfg.label)
    try:  # a per-region TextArea names boxes (identify), it is not a prompt
        prompt_name, _, _ = label_interface.get_first_tag_occurence(
            "TextArea", "Image", name_filter=lambda n: not is_per_region(label_interface.get_control(n)),
            to_name_filter=lambda n: n == to_name)
    except ValueError:
        prompt_name = None
    return Target(from_name, to_name, data_key, labels, label_map, default, prompt_name, control)
