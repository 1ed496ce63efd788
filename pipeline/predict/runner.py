"""Per-process pipeline cache and the per-task prediction loop (isolation + bounded concurrency).

Label Studio's backend contract builds a model object per request, so everything heavy lives
in process caches (``pipeline.process_cache``): one ``Pipeline`` per project YAML per process
(``pipelines``; providers come from the process-wide registry), re-created only when the YAML
file changes. Model compute runs in model slots, one slot per task, never during a download: a job's
own (``JobSlots``, PREDICT_CONCURRENCY), or the ones a caller hands ``predict_all`` (the ML backend hands
its worker's, which also admit a /predict)."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from pipeline import certainty, deadline
from pipeline.cascade import Pipeline
from pipeline.config import ProjectConfig, config_mtime, load_project
from pipeline.images import Photo
from pipeline.labelstudio.coords import point_to_pixel, rect_to_xyxy
from pipeline.labelstudio.interactive import Interaction
from pipeline.labelstudio.media import display_url, fetch_file, fetch_photo
from pipeline.labelstudio.target import Target, find_target
from pipeline.model_version import base_version
from pipeline.predict import identify
from pipeline.process_cache import ProcessCache
from pipeline.providers.hub import ModelUnavailable
from pipeline.settings import Predict

log = logging.getLogger(__name__)

# cfg -> Pipeline; tests replace it to inject providers with known answers.
PIPELINE_FACTORY: Callable[[ProjectConfig], Pipeline] = Pipeline
# (url, task_id, working_pixels=, label_studio_url=, api_key=) -> Photo; the only way task images are read
# (through ``fetcher``).
IMAGE_FETCHER: Callable[..., Photo] = fetch_photo
# (url, dest, task_id, max_bytes=, label_studio_url=, api_key=) -> dest; the only way task videos are read
VIDEO_FETCHER: Callable[..., object] = fetch_file

pipelines: ProcessCache = ProcessCache("pipelines")  # YAML path -> (its mtimes, ProjectConfig, Pipeline)
# the model slots of the predict_all call this thread works for (anything with ``hold(timeout)``)
_slots: contextvars.ContextVar[Optional[object]] = contextvars.ContextVar("lf_slots", default=None)


class TaskRefused(ValueError):
    """The task as sent cannot be served (its reason is the answer, no exception name)."""


def slot_count() -> int:
    """PREDICT_CONCURRENCY: model computations run at once per process (default 4)."""
    return Predict.read().concurrency


class JobSlots:
    """A job process's model slots (``predict``, a Ray actor, ``calibrate``): at most ``size`` model
    computations at once; ``hold`` raises ``TimeoutError`` when none comes free within ``timeout``."""

    def __init__(self, size: int):
        self.size = size
        self._sem = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def hold(self, timeout: Optional[float] = None):
        if not self._sem.acquire(timeout=timeout):
            raise TimeoutError(f"no model slot came free within {timeout:g} s")
        try:
            yield
        finally:
            self._sem.release()


_job_slots: ProcessCache = ProcessCache("job model slots")  # size -> JobSlots
LABEL_STUDIO_PREDICT_TIMEOUT = 100  # seconds Label Studio waits for /predict


def load(path: str | os.PathLike) -> tuple[ProjectConfig, Pipeline]:
    """The project's config and Pipeline, built once per process (again if the YAML or its calibration
    file changed)."""
    path = str(Path(path).resolve())
    mtime = config_mtime(path)  # the YAML's and its calibration file's; a missing YAML: load_project says so

    def build():
        cfg = load_project(path)
        return mtime, cfg, PIPELINE_FACTORY(cfg)
    _, cfg, pipe = pipelines.get(path, build, fresh=lambda hit: hit[0] == mtime)
    return cfg, pipe


def fetcher(cfg: ProjectConfig, label_studio_url: Optional[str] = None, api_key: Optional[str] = None
            ) -> Callable[[str, object], Photo]:
    """(url, task_id) -> the task's image from that Label Studio (default LABEL_STUDIO_URL / _API_KEY),
    decoded at ``cfg``'s working resolution (``budgets.decode_pixels``): a photo above it never exists at
    full size in memory, while the Photo keeps the original's size, so Label Studio percentages,
    original_width/height, drawn boxes, clicks and masks stay in original pixels."""
    def fetch(url: str, task_id) -> Photo:
        return IMAGE_FETCHER(url, task_id, working_pixels=cfg.budgets.decode_pixels,
                             label_studio_url=label_studio_url, api_key=api_key)

    def to_file(url: str, task_id, dest):  # a video task's file (pipeline.predict.video)
        from pipeline.video.decode import VideoLimits
        return VIDEO_FETCHER(url, dest, task_id, max_bytes=VideoLimits.from_env().max_bytes,
                             label_studio_url=label_studio_url, api_key=api_key)
    fetch.to_file = to_file
    return fetch


@dataclass
class Request:
    """What one predict call over a Label Studio project needs: where results go (the labeling config's
    layout), the identify plan (pinned index snapshot, or None), the pipeline that runs it and the
    model_version."""
    target: Target
    plan: Optional[identify.Plan]
    pipeline: Pipeline
    version: str

    def run(self, task: dict, interaction: Optional[Interaction] = None, fetch: Optional[Callable] = None
            ) -> "TaskOutcome":
        return predict_task(task, self.pipeline, self.target, self.version, interaction, self.plan, fetch=fetch)


def prepare(cfg: ProjectConfig, pipeline: Pipeline, project_id, label_interface, base: Optional[str] = None
            ) -> Request:
    """The labeling-config target, identify plan and model_version, as the backend's predict uses them
    (raises UnsupportedConfig when the config has no output label-factory can fill on an Image)."""
    target = find_target(label_interface, cfg)
    plan = identify.plan(cfg, project_id)
    return Request(target, plan, identify.with_identifier(pipeline, plan),
                   identify.request_version(base or base_version(cfg), plan))


def log_dropped(outcome: "TaskOutcome", target: Target) -> None:
    for label, n in outcome.dropped.items():
        log.info("task %s: dropped %d box(es) labelled %r: no such label in %s", outcome.task_id, n, label,
                 ", ".join(map(repr, target.layout.outputs)))


def predict_deadline() -> Optional[float]:
    """``PREDICT_DEADLINE`` seconds for one /predict request (default 90, below Label Studio's 100);
    0 or less: no deadline."""
    return Predict.read().deadline_seconds


@contextlib.contextmanager
def model_slot():
    """Hold one of the process-wide model slots (PREDICT_CONCURRENCY) for the block: only model
    compute runs under it, never a download. Waits no longer than the request's deadline (and, for
    slots that admit requests, their own refusal)."""
    slots = _slots.get() or _job_slots.get(slot_count(), lambda: JobSlots(slot_count()))
    left = deadline.remaining()
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(slots.hold(None if left is None else max(left, 0.0)))
        except TimeoutError:
            raise deadline.DeadlineExceeded(f"{deadline.current().describe()} ran out while waiting for a model "
                                            f"slot (all PREDICT_CONCURRENCY slots of this worker were busy)") from None
        yield


@dataclass
class TaskOutcome:
    task_id: object
    prediction: Optional[dict] = None  # None: no prediction for this task
    error: str = ""
    dropped: dict = field(default_factory=dict)  # pipeline label -> number of boxes with no config label
    seconds: float = 0.0
    refused: bool = False  # the task as sent cannot be served (TaskRefused), rather than failed


def predict_task(task: dict, pipeline: Pipeline, target: Target, model_version: str,
                 interaction: Optional[Interaction] = None, plan: Optional[identify.Plan] = None,
                 fetch: Optional[Callable] = None) -> TaskOutcome:
    """One task: fetch its image, then run the cascade (or the interactive variant) in a model slot,
    convert to Label Studio.

    ``plan``: the identify stage (``pipeline`` must run ``plan.identifier``); each box's identity
    then goes into the results as ``pipeline.predict.identify`` describes. ``fetch``: (url, task_id)
    -> Photo (or PIL image), default ``fetcher(pipeline.config)`` (the predict jobs pass one bound to their
    Label Studio)."""
    t0 = time.perf_counter()
    task_id = task.get("id")
    url = task_data(task).get(target.data_key)
    if target.layout.media == "video":
        if interaction is not None:
            raise TaskRefused("interactive pre-annotation of a video is not supported: label-factory predicts "
                              "whole tracks (Retrieve predictions, or `label-factory predict`)")
        from pipeline.predict import video
        to_file = getattr(fetch, "to_file", None) or fetcher(pipeline.config).to_file
        out = TaskOutcome(task_id)
        out.prediction, out.dropped, _ = video.run_task(task_id, url, pipeline, target, model_version, to_file,
                                                        model_slot)
        out.seconds = time.perf_counter() - t0
        return out
    image = (fetch or fetcher(pipeline.config))(url, task_id)  # outside the model slot: a slow URL holds none
    with model_slot():
        out = _run_models(task_id, image, pipeline, target, model_version, interaction, plan)
    out.seconds = time.perf_counter() - t0
    return out


def task_data(task: dict) -> dict:
    """The task's ``data`` ({} when it has none); ``TaskRefused`` when it is not a JSON object."""
    data = task.get("data")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TaskRefused(f"task data must be a JSON object, got {type(data).__name__}")
    return data


def _run_models(task_id, image, pipeline: Pipeline, target: Target, model_version: str,
                interaction: Optional[Interaction], plan: Optional[identify.Plan]) -> TaskOutcome:
    out = TaskOutcome(task_id)
    layout = target.layout
    masks = layout.needs_masks
    w, h = image.width, image.height
    if interaction and interaction.example:
        ex = interaction.example
        res = pipeline.run_similar(image, rect_to_xyxy(ex.value, w, h), target.pipeline_label(ex.label), masks=masks)
    elif interaction and interaction.clicks:
        clicks = interaction.clicks
        res = pipeline.run_on_clicks(image, [point_to_pixel(c.value, w, h) for c in clicks],
                                     [c.positive for c in clicks], target.pipeline_label(clicks[-1].label))
    elif interaction and interaction.boxes:
        res = pipeline.run_on_boxes(image, [rect_to_xyxy(b.value, w, h) for b in interaction.boxes],
                                    [target.pipeline_label(b.label) for b in interaction.boxes], masks=masks)
    elif interaction and interaction.text:
        label = target.label_for_text(interaction.text)
        res = pipeline.run(image, queries={interaction.text: target.pipeline_label(label)}, skip_filter=True,
                           masks=masks)
    else:
        res = pipeline.run(image, masks=masks)
    out.prediction, out.dropped = layout.prediction(res.detections, res.width, res.height, model_version,
                                                    score=certainty.of_result(res, pipeline.config.thresholds))
    if not out.prediction["result"] and res.note:
        log.info("task %s: no boxes (%s)", task_id, res.note)
    return out


def predict_all(tasks: list[dict], run_one: Callable[[dict], TaskOutcome], limit: Optional[int] = None,
                deadline_seconds: Optional[float] = None, slots=None,
                request_errors: tuple = ()) -> list[TaskOutcome]:
    """Run ``run_one`` over the tasks, ``limit`` tasks at a time, their model compute in at most
    ``limit`` process-wide model slots (``model_slot``); a task that raises gets an outcome with the
    reason instead of failing the batch. Order is kept. A model that cannot be loaded
    (``ModelUnavailable``) is the whole call's failure: it is raised, and tasks not yet started never start.

    ``deadline_seconds``: the whole call's time budget (``pipeline.deadline``): downloads, the wait
    for a slot and the VLM calls stop when it runs out and the task's error says so.

    ``slots``: where model compute runs (anything with ``hold(timeout)``; default this process's
    ``JobSlots`` of ``limit``); ``request_errors``: exception types that are the whole request's failure,
    not a task's (the ML backend's "no slot within the slot wait"): they propagate."""
    limit = limit or slot_count()
    slots = slots or _job_slots.get(limit, lambda: JobSlots(limit))
    fatal = (ModelUnavailable, *request_errors)
    with deadline.within(deadline_seconds, f"PREDICT_DEADLINE; Label Studio waits {LABEL_STUDIO_PREDICT_TIMEOUT} s"):
        token = _slots.set(slots)
        try:
            if len(tasks) <= 1:
                return [_guarded(run_one, t, fatal) for t in tasks]
            pool = ThreadPoolExecutor(max_workers=min(limit, len(tasks)), thread_name_prefix="predict")
            try:
                return list(pool.map(deadline.propagate(lambda t: _guarded(run_one, t, fatal)), tasks))
            finally:
                pool.shutdown(cancel_futures=True)
        finally:
            _slots.reset(token)


def _guarded(run_one: Callable[[dict], TaskOutcome], task: dict, fatal: tuple) -> TaskOutcome:
    task_id = task.get("id") if isinstance(task, dict) else None
    try:
        return run_one(task)
    except fatal:
        raise  # no task can be answered without the model, or the request got no slot: the request's failure
    except TaskRefused as e:  # the task as sent cannot be served: its reason, no exception name
        log.warning("task %s: no prediction: %s", task_id, e)
        return TaskOutcome(task_id, None, str(e), refused=True)
    except Exception as e:  # noqa: BLE001 - isolate every failure to its task
        reason = f"{type(e).__name__}: {e}"
        log.warning("task %s: no prediction: %s", task_id, reason,
                    exc_info=not isinstance(e, (ValueError, RuntimeError, OSError, PermissionError)))
        return TaskOutcome(task_id, None, reason)


__all__ = ["load", "pipelines", "fetcher", "Request", "prepare", "log_dropped", "predict_task", "predict_all",
           "TaskOutcome", "TaskRefused", "JobSlots", "display_url", "model_slot", "predict_deadline", "task_data",
           "slot_count"]
