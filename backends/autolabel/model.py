"""AutoLabelModel: Label Studio asks, the label-factory cascade answers with scored boxes.

Thin on purpose: project resolution (project.py), the labeling-config target and label
mapping (labels.py), interactive context (interactive.py), image fetching (backends/images.py)
and the per-task loop with its process-wide Pipeline cache (runner.py) live next door."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

from backends.autolabel import runner
from backends.autolabel.interactive import parse_context
from backends.autolabel.labels import find_target
from backends.autolabel.project import resolve_project_path
from backends.base import LabelStudioMLBase, ModelResponse
from pipeline.config import ProjectConfig

log = logging.getLogger(__name__)


def model_version_for(cfg: ProjectConfig) -> str:
    p = cfg.providers
    return f"{cfg.project_name}-{cfg.fingerprint()}-{p.vlm.kind}+{p.grounder.kind}"


class AutoLabelModel(LabelStudioMLBase):

    def setup(self):
        self.project_path = resolve_project_path(self.extra_params)
        self.cfg, self.pipeline = runner.load(self.project_path)
        version = model_version_for(self.cfg)
        if self.get("model_version") != version:
            self.set("model_version", version)

    def predict(self, tasks: List[Dict], context: Optional[Dict] = None, **kwargs) -> ModelResponse:
        target = find_target(self.label_interface, self.cfg)
        interaction = parse_context(context, target.prompt_name, target.from_name)
        version = str(self.model_version)
        outcomes = runner.predict_all(
            tasks, lambda task: runner.predict_task(task, self.pipeline, target, version, interaction or None))
        predictions, errors = [], []
        for o in outcomes:
            for label, n in o.dropped.items():
                log.info("task %s: dropped %d box(es) labelled %r: no such label in <RectangleLabels name=%r>",
                         o.task_id, n, label, target.from_name)
            if o.prediction is None:
                predictions.append([])  # no prediction stored: Label Studio asks again next time
                errors.append({"task": o.task_id, "reason": o.error})
            else:
                predictions.append(o.prediction)
        return ModelResponse(model_version=version, predictions=predictions, errors=errors)

    @classmethod
    def warm_up(cls) -> None:
        """Load the PROJECT_CONFIG pipeline's models (at worker start rather than on the first request)."""
        try:
            _, pipeline = runner.load(resolve_project_path(None))
            pipeline.load()
            log.info("models loaded: %s", pipeline.describe())
        except Exception as e:  # noqa: BLE001 - the first request reports it properly
            log.warning("warm-up failed (predict will retry): %s: %s", type(e).__name__, e)
