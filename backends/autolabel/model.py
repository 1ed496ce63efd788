"""AutoLabelModel: Label Studio asks, the label-factory cascade answers with scored boxes.

Thin on purpose: it translates between the label-studio-ml contract (``backends.base``) and the library.
Project resolution from extra params is here (project.py); the labeling-config target, the interactive
context, image fetching and the project's model_version are the Label Studio layer's
(``pipeline.labelstudio``); the per-task loop with its process-wide Pipeline cache and the identify stage
are the predict job's (``pipeline.predict.runner``, ``pipeline.predict.identify``)."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

from backends.autolabel.project import resolve_project_path
from backends.base import ClientError, LabelStudioMLBase, ModelResponse, credentials
from backends.base import settings as contract_settings
from backends.base.errors import LabelConfigError
from backends.base.worker import Busy, model_slots
from pipeline import settings
from pipeline.distill import runs as training
from pipeline.distill.job import TrainingError
from pipeline.labelstudio import UnsupportedConfig
from pipeline.labelstudio import client as ls_client
from pipeline.labelstudio import versions as project_version
from pipeline.labelstudio.interactive import is_interactive, parse_context
from pipeline.model_version import base_version, with_index
from pipeline.predict import identify, runner

log = logging.getLogger(__name__)

__all__ = ["AutoLabelModel"]

credentials.use(ls_client)  # the contract's get_label_studio_client is label-factory's one client
contract_settings.use(settings.ContractValues())  # and every value it reads comes from pipeline/settings.py


class AutoLabelModel(LabelStudioMLBase):
    TAKES_MODEL_SLOTS = True  # runner.predict_task: a slot for each task's models, none for its download

    def setup(self):
        self.project_path = resolve_project_path(self.extra_params)
        self.cfg, self.pipeline = runner.load(self.project_path)
        self.base_version = base_version(self.cfg)  # once per request: predict and fit append to it
        self._set_version(identify.current_version(self.cfg, self.project_id, self.base_version))
        identify.watch(self.cfg, self.project_id, self.label_interface)

    def _set_version(self, version: str) -> None:
        if self.get("model_version") != version:
            self.set("model_version", version)

    def predict(self, tasks: List[Dict], context: Optional[Dict] = None, **kwargs) -> ModelResponse:
        try:
            req = runner.prepare(self.cfg, self.pipeline, self.project_id, self.label_interface, self.base_version)
        except UnsupportedConfig as e:
            raise LabelConfigError(str(e)) from None
        interaction = None
        if is_interactive(context):
            interaction = parse_context(context, req.target.layout)
            if not interaction:  # only predicted regions in the context: nothing was drawn or typed
                log.info("interactive: project %s task(s) %s: %s: no suggestion", self.project_id,
                         [t.get("id") for t in tasks], interaction.describe())
                return ModelResponse(model_version=req.version,
                                     predictions=[{"result": [], "model_version": req.version} for _ in tasks])
        outcomes = runner.predict_all(tasks, lambda task: req.run(task, interaction),
                                      deadline_seconds=runner.predict_deadline(), slots=model_slots(),
                                      request_errors=(Busy,))
        if outcomes and all(o.refused for o in outcomes):  # nothing to answer: the request is at fault
            first = outcomes[0]
            more = f" (and {len(outcomes) - 1} more task(s))" if len(outcomes) > 1 else ""
            raise ClientError(f"task {first.task_id}: {first.error}{more}")
        predictions, errors = [], []
        for o in outcomes:
            runner.log_dropped(o, req.target)
            if interaction is not None:
                answered = len(o.prediction["result"]) if o.prediction else 0
                log.info("interactive: project %s task %s: %s: %d box(es) suggested", self.project_id, o.task_id,
                         interaction.describe(), answered)
            if o.prediction is None:
                predictions.append([])  # no prediction stored: Label Studio asks again next time
                errors.append({"task": o.task_id, "reason": o.error})
            else:
                predictions.append(o.prediction)
        if interaction is None:
            log.info("batch: project %s: %d task(s) asked, %d predicted as %s", self.project_id, len(tasks),
                     len(tasks) - len(errors), req.version)
            if len(errors) < len(tasks):
                project_version.keep(self.project_id, req.version)  # Label Studio stores these: the score column
        return ModelResponse(model_version=req.version, predictions=predictions, errors=errors)

    def fit(self, event, data, **kwargs):
        """Annotation created/updated/deleted and START_TRAINING update the project's reference index
        (identify stage on) through its journal, and the model_version follows its version. START_TRAINING
        (Settings -> Model -> Start Training) also starts the project's student training in the background
        (pipeline/distill/runs.py), or answers that one runs."""
        res = identify.fit(event, data, self.cfg, self.label_interface, self.project_path)
        if res.get("index_version") is not None:
            self._set_version(with_index(self.base_version, res["index_version"]))
        if event == "START_TRAINING":
            try:
                res = {**res, "training": training.start(self.project_path, self.project_id)}
            except TrainingError as e:  # no student to train: fine when the index was what it asked for
                if not identify.enabled(self.cfg):
                    raise ClientError(str(e)) from None
                res = {**res, "training": {"state": "not started", "reason": str(e)}}
        return res

    @classmethod
    def metrics(cls) -> dict:
        """For /metrics: how far the identify index is behind, and each project's student training."""
        return {**identify.metrics(), "training": training.metrics()}

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
