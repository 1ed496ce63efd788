"""AutoLabelModel: Label Studio asks, the label-factory cascade answers with scored boxes.

Thin on purpose: project resolution (project.py), the labeling-config target and label
mapping (labels.py), interactive context (interactive.py), image fetching (backends/images.py),
the per-task loop with its process-wide Pipeline cache (runner.py) and the identify stage with
its reference index kept current by ``fit`` (identify.py) live next door."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

from backends.autolabel import identify, runner
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
        self._set_version(identify.current_version(model_version_for(self.cfg), self.cfg, self.project_id))

    def _set_version(self, version: str) -> None:
        if self.get("model_version") != version:
            self.set("model_version", version)

    def predict(self, tasks: List[Dict], context: Optional[Dict] = None, **kwargs) -> ModelResponse:
        target = find_target(self.label_interface, self.cfg)
        interaction = parse_context(context, target.prompt_name, target.from_name)
        plan = identify.plan(self.cfg, self.project_id, self.label_interface, target)
        pipeline = identify.with_identifier(self.pipeline, plan)
        version = identify.request_version(model_version_for(self.cfg), plan)
        outcomes = runner.predict_all(
            tasks, lambda task: runner.predict_task(task, pipeline, target, version, interaction or None, plan))
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

    def fit(self, event, data, **kwargs):
        """Annotation created/updated/deleted and START_TRAINING update the project's reference index
        (identify stage on), and the model_version follows its version."""
        res = identify.fit(event, data, self.cfg, self.label_interface, self.project_path)
        if res.get("index_version") is not None:
            self._set_version(identify.version(model_version_for(self.cfg), res["index_version"]))
        return res

    @classmethod
    def warm_up(cls) -> None:
        """Load the PROJECT_CONFIG pipeline's models (at worker start rather than on the first request)."""
        try:
            cfg, pipeline = runner.load(resolve_project_path(None))
            pipeline.load()
            identify.warm_up(cfg)
            log.info("models loaded: %s", pipeline.describe())
        except Exception as e:  # noqa: BLE001 - the first request reports it properly
            log.warning("warm-up failed (predict will retry): %s: %s", type(e).__name__, e)
