"""A Label Studio project's reviewed tasks, each with every candidate the cascade proposes for it.

Reviewed: the task's reviewed truth as ``evaluate`` and ``export`` read it (pipeline/labelstudio/truth.py:
its reviewed annotation, the regions of the labeling config's output controls as the boxes that enclose
them), in pixels of the image, labelled as the pipeline labels them. Tasks are listed a page at a time
with their data and annotations (pipeline/evaluate/listing.py).

Candidates: the project's pipeline run on each task's image as the backend runs it (``runner.PIPELINE_FACTORY``,
the backend's image fetching, model slots and per-task isolation), with the filter, grounding and verify
thresholds at 0 so that every candidate NMS and ``max_boxes`` keep reaches verify. Its model answers come
from the answer cache when an earlier run asked them: only what was never asked costs model time, and a
second calibration costs none. A task whose image or model fails is left out and reported."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np

from pipeline.calibrate.search import Reviewed
from pipeline.cascade import PipelineResult
from pipeline.config import ProjectConfig
from pipeline.detections import Detections
from pipeline.labelstudio import truth
from pipeline.labelstudio.target import Target
from pipeline.predict import runner

INCLUDE = "id,data,annotations"


def at_zero(cfg: ProjectConfig) -> ProjectConfig:
    """``cfg`` with every threshold at 0 (no per-label ones), identify off and no routing (the thresholds are the
    cascade's): all candidates, scored."""
    th = cfg.thresholds.model_copy(update={"filter": 0.0, "grounding": 0.0, "verify": 0.0, "per_label": {}})
    return cfg.model_copy(update={"thresholds": th, "route": None,
                                  "stages": cfg.stages.model_copy(update={"identify": False})})


def shown(target: Target, label) -> bool:
    """Whether the labeling config has a place for boxes of this pipeline label."""
    return target.layout.label_for(str(label)) is not None


def labels_to_calibrate(cfg: ProjectConfig, target: Target) -> list[str]:
    """Pipeline labels the grounder proposes and the labeling config can show."""
    grounded = set(cfg.query_labels().values())
    return [lab for lab in cfg.labels() if lab in grounded and shown(target, lab)]


def truth_boxes(task: dict, target: Target, width: int, height: int) -> Optional[Detections]:
    """The task's reviewed truth (pipeline/labelstudio/truth.py) in pixels of a ``width`` x ``height`` image,
    labelled as the pipeline labels them (None: not reviewed)."""
    ann = truth.reviewed_annotation(task)
    if ann is None:
        return None
    regions, _ = truth.boxes(truth.output_results(ann.get("result"), target.layout), width, height)
    return Detections(xyxy=regions.xyxy, scores=[math.nan] * len(regions),
                      labels=[target.pipeline_label(str(lab) or None) for lab in regions.labels])


def reviewed(task: dict, res: PipelineResult, target: Target) -> Optional[Reviewed]:
    truth = truth_boxes(task, target, res.width, res.height)
    if truth is None:
        return None
    cand = res.detections.active()
    cand = cand[np.array([shown(target, lab) for lab in cand.labels], bool)]  # what the backend shows
    p = math.nan if res.filter_answer is None else float(res.filter_answer.p_yes)
    return Reviewed(int(task["id"]), p, cand, truth)


@dataclass
class Collected:
    reviewed: list[Reviewed] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {"task", "reason"}
    cache: dict = field(default_factory=dict)  # answers reused ("hits") and asked of the models ("misses")


def collect(tasks: Iterable[dict], cfg: ProjectConfig, target: Target, fetch: Callable,
            concurrency: Optional[int] = None, on_done: Optional[Callable[[], None]] = None,
            batch: int = 100) -> Collected:
    """Every reviewed task of ``tasks`` with its candidates, ``batch`` tasks in memory at a time."""
    pipe = runner.PIPELINE_FACTORY(at_zero(cfg))
    got = Collected()

    def run_one(task: dict) -> runner.TaskOutcome:
        try:
            image = fetch(runner.task_data(task).get(target.data_key), task.get("id"))
            with runner.model_slot():
                res = pipe.run(image)
            r = reviewed(task, res, target)
            if r is not None:
                got.reviewed.append(r)
            return runner.TaskOutcome(task.get("id"))
        finally:
            if on_done is not None:
                on_done()

    page: list[dict] = []
    for task in tasks:
        if truth.reviewed_annotation(task) is not None:
            page.append(task)
        if len(page) >= batch:
            got.failed += _run(page, run_one, concurrency)
            page = []
    got.failed += _run(page, run_one, concurrency)
    got.reviewed.sort(key=lambda r: r.task_id)
    got.cache = pipe.cache_counts()
    return got


def _run(page: list[dict], run_one: Callable, concurrency: Optional[int]) -> list[dict]:
    return [{"task": o.task_id, "reason": o.error} for o in runner.predict_all(page, run_one, limit=concurrency)
            if o.error]
