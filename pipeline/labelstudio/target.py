"""The request's labeling config (read by the output layer, ``pipeline.labelstudio.Layout``) with the
project YAML's labels mapped onto it: which config label a typed prompt or a drawn region means, and
which project label a config label comes from (verify asks about the target by its own name)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from pipeline.config import ProjectConfig
from pipeline.labelstudio import Layout

log = logging.getLogger(__name__)


@dataclass
class Target:
    layout: Layout
    project_labels: list[str]  # the YAML's labels (pipeline labels)
    default_label: str  # config label for the project's target (interactive prompts without a label)

    @property
    def data_key(self) -> str:
        return self.layout.data_key

    def pipeline_label(self, config_label: Optional[str]) -> str:
        """The project label a config label comes from (the config label itself if none)."""
        label = config_label or self.default_label
        return next((p for p in self.project_labels if self.layout.label_for(p) == label), label)

    def label_for_text(self, text: str) -> str:
        """Config label for a typed prompt: an alias or label name it matches, else the default label."""
        return self.layout.label_for(text) or self.default_label


def find_target(label_interface, cfg: ProjectConfig) -> Target:
    """Where the project's boxes go in this labeling config (``UnsupportedConfig`` when it has no place
    for them)."""
    layout = Layout.from_config(label_interface)
    labels = cfg.labels()
    mapped = {lab: layout.label_for(lab) for lab in labels}
    if layout.labels() and not any(mapped.values()):
        log.warning("no project label (%s) matches a label of %s (%s): every box will be dropped",
                    ", ".join(labels), ", ".join(map(repr, layout.outputs)), ", ".join(layout.labels()))
    default = mapped.get(cfg.label) or next(iter(layout.labels()), cfg.label)
    return Target(layout, labels, default)
