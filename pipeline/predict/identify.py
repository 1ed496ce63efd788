"""The identify stage inside the auto-label backend (``stages.identify: true`` in the project YAML).

One Label Studio connection does both jobs: ``predict`` runs filter -> ground -> verify -> identify
and puts each box's identity where the labeling config has room for it; ``fit`` hands annotation
webhooks and START_TRAINING to the identify service (``pipeline.references``), which keeps the
project's reference index under MODEL_DIR current. The stand-alone ``IdentifyModel`` uses the
same service, so both read and write the same per-project index.

Where an identity goes (``pipeline.labelstudio.Layout.results``; each box carries its identify match
in ``Detections.identities``), per box:

* the config has a per-region ``TextArea`` on the image: a TextArea result on the box's region
  holds the name, scored with the cosine; the rectangle keeps its grounding label and verify score;
* else a per-region ``Choices`` that has the name as a choice: a Choices result, likewise;
* else a label of an output control (``RectangleLabels``, ``BrushLabels``, ``PolygonLabels``) that is the
  name (``predicted_values`` aliases and case-insensitive names honoured): the region's label becomes
  the name, scored with the cosine;
* ``"unknown"`` (cosine below ``providers.identify.min_cosine`` or margin below ``min_margin`` of
  the project's YAML), or a name the config has no place for: the rectangle keeps its grounding
  label and verify score and carries no identity; its region meta text says what the index answered.

The thresholds are the YAML's (the one this Label Studio project runs), the CLIP model the
service's (it wrote the index). A request answers from one index snapshot; its version is in
``model_version``: ``<base version>+identify-v<N>``."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Optional

from pipeline.cascade import Pipeline
from pipeline.config import ProjectConfig
from pipeline.labelstudio import Layout, UnsupportedConfig
from pipeline.model_version import base_version, with_index

log = logging.getLogger(__name__)


def enabled(cfg: ProjectConfig) -> bool:
    return bool(cfg.stages.identify)


def service():
    """The process-wide identify service (embedder loaded once, per-project index stores)."""
    from pipeline.references.service import service as _service
    return _service()


def for_job(cfg: ProjectConfig) -> None:
    """A predict job (the driver and its Ray actors, not a backend) identifies with its own project's CLIP
    model, the one the backend running that YAML indexes with: PROJECT_CONFIG may name another YAML here
    (the Docker image's default) or none. Call before anything else asks for the service."""
    from pipeline.references import service as svc
    if enabled(cfg) and svc.loaded_service() is None:
        svc.set_service(svc.IdentifyService(cfg.providers.identify))


def current_version(cfg: ProjectConfig, project_id, base: Optional[str] = None) -> str:
    """The project's model_version now: with its current index version when identify is on. ``base``: the
    config's ``base_version`` when the caller has it already."""
    base = base or base_version(cfg)
    if not enabled(cfg) or not project_id:
        return base
    return with_index(base, service().index_version(project_id))


@dataclass
class Plan:
    """One predict request's identify stage: a hook pinned to one index snapshot."""
    identifier: object  # pipeline.identify.stage.Identifier
    index_version: int


def request_version(base: str, p: Optional[Plan]) -> str:
    """The model_version of a request's predictions: ``base`` (the config's ``base_version``) with the index
    snapshot it answered from."""
    return with_index(base, None if p is None else p.index_version)


def plan(cfg: ProjectConfig, project_id) -> Optional[Plan]:
    """The identify stage for this request, or None when the YAML has it off (or there is no project)."""
    if not enabled(cfg):
        return None
    if not project_id:
        log.warning("identify is on but the request names no Label Studio project: boxes are not identified")
        return None
    ident = service().identifier(project_id, provider=cfg.providers.identify, pin=True)
    return Plan(ident, int(ident.last_version or 0))


def with_identifier(pipeline: Pipeline, p: Optional[Plan]) -> Pipeline:
    """A per-request view of the shared Pipeline that runs this request's identify hook."""
    if p is None:
        return pipeline
    view = copy.copy(pipeline)  # shares the providers; the process-wide Pipeline stays untouched
    view.identifier = p.identifier
    return view


def _data_key(cfg: ProjectConfig, label_interface) -> Optional[str]:
    """Where task["data"] has the image (None: the fetcher looks for an image URL in the task data)."""
    try:
        return Layout.from_config(label_interface).data_key
    except UnsupportedConfig:
        return None


def fit(event: str, data: dict, cfg: ProjectConfig, label_interface, project_path=None) -> dict:
    """Annotation webhooks / START_TRAINING -> the identify service's journal (when the YAML has identify on)."""
    if not enabled(cfg):
        return {"event": event, "status": "ignored",
                "reason": f"stages.identify is off in {project_path or cfg.project_name}: no reference index to update"}
    return service().fit(event, data, _data_key(cfg, label_interface))


def watch(cfg: ProjectConfig, project_id, label_interface) -> None:
    """A Label Studio project this process serves with identify on: caught up with Label Studio."""
    if enabled(cfg) and project_id:
        service().watch(project_id, _data_key(cfg, label_interface))


def warm_up(cfg: ProjectConfig) -> None:
    """Load the embedder and start applying the webhook journal (what a killed worker left)."""
    if enabled(cfg):
        svc = service()
        _ = svc.embedder
        svc.start()


def metrics() -> dict:
    """The identify index's lag (``IdentifyService.metrics``), once this MODEL_DIR has a journal."""
    svc = service()
    return {"identify": svc.metrics()} if svc.journal_path.exists() else {}
