"""Model label names -> labels of a Label Studio control tag (``predicted_values`` aware): the output
layer's mapping (``pipeline.labelstudio.controls.build_label_map``), under upstream's module name."""
from __future__ import annotations

from pipeline.labelstudio.controls.base import build_label_map

__all__ = ["build_label_map"]
