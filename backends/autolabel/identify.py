"""The identify stage inside the auto-label backend (``stages.identify: true`` in the project YAML).

One Label Studio connection does both jobs: ``predict`` runs filter -> ground -> verify -> identify
and puts each box's identity where the labeling config has room for it; ``fit`` hands annotation
webhooks and START_TRAINING to the identify service (``backends.identify``), which keeps the
project's reference index under MODEL_DIR current. The stand-alone ``IdentifyModel`` uses the
same service, so both read and write the same per-project index.

Where an identity goes (``backends.identify.predict.identity_results``), per box:

* the config has a per-region ``TextArea`` on the image: a TextArea result on the box's region
  holds the name, scored with the cosine; the rectangle keeps its grounding label and verify score;
* else a per-region ``Choices`` that has the name as a choice: a Choices result, likewise;
* else a ``RectangleLabels`` label that is the name (``predicted_values`` aliases and
  case-insensitive names honoured): the rectangle's label becomes the name, scored with the cosine;
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

import numpy as np

from backends.autolabel.labels import LabelConfigError, Target, find_target, is_per_region
from backends.base.labels import build_label_map
from backends.identify.predict import Layout, identity_results
from pipeline.config import ProjectConfig, model_version
from pipeline.detections import Detections
from pipeline.identify.index import UNKNOWN, Match
from pipeline.pipeline import Pipeline

log = logging.getLogger(__name__)


def enabled(cfg: ProjectConfig) -> bool:
    return bool(cfg.stages.identify)


def service():
    """The process-wide identify service (embedder loaded once, per-project index stores)."""
    from backends.identify.model import service as _service
    return _service()


def current_version(cfg: ProjectConfig, project_id) -> str:
    """The project's model_version now: with its current index version when identify is on."""
    if not enabled(cfg) or not project_id:
        return model_version(cfg)
    return model_version(cfg, service().index_version(project_id))


@dataclass
class Plan:
    """One predict request's identify stage: a hook pinned to one index snapshot, and the layout."""
    identifier: object  # pipeline.identify.stage.Identifier
    layout: Layout
    index_version: int


def request_version(cfg: ProjectConfig, p: Optional[Plan]) -> str:
    """The model_version of a request's predictions (with the index snapshot it answered from)."""
    return model_version(cfg, None if p is None else p.index_version)


def layout_for(label_interface, target: Target) -> Layout:
    """The identify layout of the target: its RectangleLabels plus a per-region TextArea/Choices on its image."""
    lay = Layout(target.to_name, target.data_key, target.from_name, "rectanglelabels", list(target.labels),
                 rect_control=target.control)
    for ctl in label_interface.controls:
        if target.to_name not in (ctl.to_name or []) or not is_per_region(ctl):
            continue
        tag = ctl.tag.lower()
        if tag == "textarea" and lay.text_name is None:
            lay.text_name = ctl.name
        elif tag == "choices" and lay.choices_name is None:
            lay.choices_name, lay.choices = ctl.name, tuple(getattr(ctl, "labels", []) or [])
    return lay


def plan(cfg: ProjectConfig, project_id, label_interface, target: Target) -> Optional[Plan]:
    """The identify stage for this request, or None when the YAML has it off (or there is no project)."""
    if not enabled(cfg):
        return None
    if not project_id:
        log.warning("identify is on but the request names no Label Studio project: boxes are not identified")
        return None
    ident = service().identifier(project_id, provider=cfg.providers.identify, pin=True)
    return Plan(ident, layout_for(label_interface, target), int(ident.last_version or 0))


def with_identifier(pipeline: Pipeline, p: Optional[Plan]) -> Pipeline:
    """A per-request view of the shared Pipeline that runs this request's identify hook."""
    if p is None:
        return pipeline
    view = copy.copy(pipeline)  # shares the providers; the process-wide Pipeline stays untouched
    view.identifier = p.identifier
    return view


def identify_all(p: Plan, image, dets: Detections) -> None:
    """Identify every active box again (interactive: drawn boxes verify dropped are answered too)."""
    p.identifier(image, dets)


def _match(dets: Detections, i: int) -> Optional[Match]:
    ex = dets.extra
    if "identity" not in ex or not str(ex["identity"][i]):
        return None
    label = str(ex["identity"][i])
    best = str(ex.get("identity_best", [""] * len(dets))[i]) or None
    variant = str(ex.get("identity_variant", [""] * len(dets))[i]) or None
    nan = np.full(len(dets), np.nan)
    return Match(label=label, best_label=best, variant=variant,
                 cosine=float(ex.get("identity_cosine", nan)[i]), margin=float(ex.get("identity_margin", nan)[i]),
                 known=label != UNKNOWN)


def results(dets: Detections, width: int, height: int, target: Target, label_map: dict, p: Plan) -> list[dict]:
    """Kept boxes with a config label, as Label Studio results with their identities."""
    idx = [i for i in dets.active_index() if str(dets.labels[i]) in label_map]
    if not idx:
        return []
    matches = [_match(dets, i) for i in idx]
    names = sorted({m.label for m in matches if m is not None and m.known})
    id_map = build_label_map(target.control, names) if names else {}
    for m in matches:
        if m is not None and m.known and m.label not in id_map and not (p.layout.text_name or (
                p.layout.choices_name and m.label in p.layout.choices)):
            log.info("identity %r has no place in the labeling config (no per-region TextArea/Choices, "
                     "no such label in <RectangleLabels name=%r>): the box keeps its label", m.label, target.from_name)
    scores = dets.final_scores()
    own = [None if np.isnan(scores[i]) else float(scores[i]) for i in idx]
    return identity_results(p.layout, dets.xyxy[idx], [label_map[str(dets.labels[i])] for i in idx], matches,
                            width, height, id_map, box_scores=own)


def _data_key(cfg: ProjectConfig, label_interface) -> Optional[str]:
    """Where task["data"] has the image (None: the fetcher looks for an image URL in the task data)."""
    try:
        return find_target(label_interface, cfg).data_key
    except (LabelConfigError, AttributeError):
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
