"""Pre-annotate a whole Label Studio project as a batch job (``label-factory predict``).

Label Studio's "Retrieve predictions" asks the backend synchronously and times out on big
projects; this job does the same work from outside: it lists the project's tasks through
label-studio-sdk (paginated), runs exactly what the backend's ``predict`` runs per task
(``runner.prepare`` + ``runner.predict_task``: same image fetching, pipeline, label mapping,
identify plan and model_version) and hands each finished prediction to ``writer.PredictionWriter``,
which stores them in bulk while the next page is predicted, so an interrupted job (Ctrl-C: what
finished is written, ``Summary.interrupted``) keeps what it did. ``predict --ray`` (ray_job.py) picks
tasks and writes through the same functions and writer.

With ``only_missing`` (the default) a task that already has a prediction with the current
model_version is skipped: re-running predicts nothing twice. At the end the project's model_version
becomes that version, so Label Studio's Prediction score column scores and sorts these predictions.
A task that fails (image gone or corrupt, model error, Label Studio refusing the prediction) is
recorded with its reason (Label Studio's own answer for a refused prediction) and the job goes on."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

from label_studio_sdk.label_interface import LabelInterface
from tqdm import tqdm

from pipeline.cascade import Pipeline
from pipeline.config import ProjectConfig
from pipeline.labelstudio import lsapi, projects
from pipeline.labelstudio.target import find_target
from pipeline.predict import identify, runner
from pipeline.predict.writer import PredictionWriter, WriteOptions

log = logging.getLogger(__name__)

TASK_FIELDS = "id,data,predictions"  # what the job reads of a task (no annotations, no drafts)


class JobError(RuntimeError):
    """The job cannot start: no such project, ambiguous title, unusable labeling config, ..."""


# -- which tasks ------------------------------------------------------------------------------
def prediction_versions(task) -> list[str]:
    """model_version of each prediction a listed task carries (SDK objects or plain dicts)."""
    preds = task.get("predictions") if isinstance(task, dict) else getattr(task, "predictions", None)
    out = []
    for p in preds or []:
        v = p.get("model_version") if isinstance(p, dict) else getattr(p, "model_version", None)
        out.append(v or "")
    return out


def needs_prediction(task, model_version: str, only_missing: bool = True) -> bool:
    """False when ``only_missing`` and the task already has a prediction with ``model_version``."""
    return not only_missing or model_version not in prediction_versions(task)


def as_task(task) -> dict:
    """The task as the backend receives it: ``{"id", "data"}``."""
    if isinstance(task, dict):
        return {"id": task.get("id"), "data": task.get("data") or {}}
    return {"id": task.id, "data": getattr(task, "data", None) or {}}


def find_project_id(client, title: str) -> int:
    """The id of the one Label Studio project titled ``title`` (``pipeline.labelstudio.projects``); JobError
    when there is none or several."""
    try:
        found = projects.find_project(client, title)
    except projects.AmbiguousProject as e:
        raise JobError(f"{e}: pass --ls-project ID") from None
    if found is None:
        raise JobError(f"no Label Studio project titled {title!r} (the YAML's project_name): create it with "
                       "`label-factory import`, or pass --ls-project ID")
    return found.id


# -- what happened ------------------------------------------------------------------------------
@dataclass
class Summary:
    project_id: int
    model_version: str
    only_missing: bool = True
    dry_run: bool = False
    limit: Optional[int] = None
    seen: int = 0  # tasks listed
    predicted: int = 0  # predictions created (or, dry run: tasks that would be predicted)
    empty: int = 0  # of those, predictions with no boxes
    boxes: int = 0
    already: int = 0  # skipped: already predicted with this model_version
    failed: list[dict] = field(default_factory=list)  # {"task": id, "reason": str}
    stopped_at_limit: bool = False
    seconds: float = 0.0  # wall time spent predicting and storing
    project_version: str = ""  # what became of the project's model_version (Prediction score column)
    write_requests: int = 0  # Label Studio write requests (bulk, and single creates after a refusal)
    write_seconds: float = 0.0  # time spent in them
    interrupted: bool = False  # stopped by Ctrl-C: what had finished is stored

    @property
    def attempted(self) -> int:
        return self.predicted + len(self.failed)

    @property
    def seconds_per_task(self) -> Optional[float]:
        return self.seconds / self.attempted if self.attempted and not self.dry_run else None

    def failed_by_reason(self) -> dict[str, list[dict]]:
        """Failures grouped by kind (the part of the reason before the first colon, e.g. ImageFetchError)."""
        out: dict[str, list[dict]] = OrderedDict()
        for f in self.failed:
            out.setdefault(f["reason"].split(":", 1)[0].strip() or "error", []).append(f)
        return out

    def to_dict(self) -> dict:
        return {"project": self.project_id, "model_version": self.model_version, "only_missing": self.only_missing,
                "dry_run": self.dry_run, "limit": self.limit, "stopped_at_limit": self.stopped_at_limit,
                "seen": self.seen, "predicted": self.predicted, "empty": self.empty, "boxes": self.boxes,
                "skipped_already_predicted": self.already, "failed": len(self.failed),
                "failed_by_reason": {k: [f["task"] for f in v] for k, v in self.failed_by_reason().items()},
                "failures": self.failed, "project_model_version": self.project_version,
                "write_requests": self.write_requests, "write_seconds": round(self.write_seconds, 3),
                "interrupted": self.interrupted,
                "seconds": round(self.seconds, 3),
                "seconds_per_task": None if self.seconds_per_task is None else round(self.seconds_per_task, 3)}

    def lines(self) -> list[str]:
        verb = "would predict" if self.dry_run else "predicted"
        out = [f"Label Studio project {self.project_id}, model_version {self.model_version}"
               + (" (dry run: nothing stored)" if self.dry_run else ""),
               f"tasks seen: {self.seen}",
               f"{verb}: {self.predicted}" + ("" if self.dry_run else f" ({self.boxes} boxes, {self.empty} with none)"),
               f"skipped, already predicted with this model_version: {self.already}"
               + ("" if self.only_missing else " (--no-only-missing: none skipped)"),
               f"failed: {len(self.failed)}"]
        for kind, items in self.failed_by_reason().items():
            out.append(f"  {kind}: {len(items)}")
            out += [f"    task {f['task']}: {f['reason']}" for f in items]
        if self.stopped_at_limit:
            out.append(f"stopped at --limit {self.limit}: tasks after the last one seen were not looked at")
        if self.project_version:
            out.append(f"project model_version: {self.project_version}")
        if self.seconds_per_task is not None:
            out.append(f"seconds per task: {self.seconds_per_task:.3f} ({self.seconds:.1f} s for {self.attempted})")
        if not self.dry_run:
            out.append(f"Label Studio writes: {self.write_requests} request(s), {self.write_seconds:.1f} s")
        if self.interrupted:
            out.append("interrupted: predictions finished before the stop are stored; run again to continue "
                       "(--only-missing skips them)")
        return out


# -- the job ------------------------------------------------------------------------------
def list_tasks(client, project_id: int, page_size: int) -> Iterable:
    """The project's tasks, page by page (raw data URLs: the fetcher resolves them like the backend)."""
    return lsapi.items(client.tasks.list, page_size, project=project_id, include=TASK_FIELDS, resolve_uri=False)


def _batches(tasks: Iterable, size: int) -> Iterator[list]:
    batch = []
    for t in tasks:
        batch.append(t)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(client, cfg: ProjectConfig, pipeline: Pipeline, project_id: int, *, only_missing: bool = True,
        limit: Optional[int] = None, batch_size: int = 50, dry_run: bool = False, progress: bool = True,
        fetch: Optional[Callable] = None, concurrency: Optional[int] = None,
        write: WriteOptions = WriteOptions()) -> Summary:
    """Predict the project's tasks and store the predictions in Label Studio.

    ``fetch``: (url, task_id) -> Photo or PIL image (default: ``runner.fetcher(cfg)``, the backend's);
    ``limit``: at most this many tasks predicted (failures count, skipped ones do not);
    ``batch_size``: tasks per page listed and run together (``concurrency`` at a time, default
    PREDICT_CONCURRENCY as in the backend); their predictions go to the writer (``write``: bulk size,
    rate cap, flush time) while the next page runs. Ctrl-C stops the job: what finished is written and
    the Summary says ``interrupted``."""
    if batch_size < 1:
        raise JobError("--batch-size must be at least 1")
    project = client.projects.get(project_id)
    label_interface = LabelInterface(config=project.label_config)
    identify.for_job(cfg)
    try:
        if dry_run:  # no models loaded, no index snapshot pinned: only the target check and the version
            find_target(label_interface, cfg)  # raises when the config has no output on an Image
            version = identify.current_version(cfg, str(project_id))
            req = None
        else:
            req = runner.prepare(cfg, pipeline, str(project_id), label_interface)
            version = req.version
    except ValueError as e:  # UnsupportedConfig
        raise JobError(f"Label Studio project {project_id}: {e}") from None

    s = Summary(project_id, version, only_missing=only_missing, dry_run=dry_run, limit=limit)
    lock = threading.Lock()
    total = getattr(project, "task_number", None)
    bar = tqdm(total=total if isinstance(total, int) else None, desc="tasks", unit="task", disable=not progress)

    def postfix(n: int = 0) -> None:
        with lock:
            bar.set_postfix(predicted=s.predicted, skipped=s.already, failed=len(s.failed), refresh=False)

    def run_one(task: dict):
        try:
            return req.run(task, fetch=fetch)
        finally:
            bar.update(1)

    writer = None if dry_run else PredictionWriter(client, project_id, version, s, req.target.layout.regions,
                                                   lock=lock, on_done=postfix, options=write)
    t0 = time.perf_counter()
    chosen = 0
    try:
        for page in _batches(list_tasks(client, project_id, batch_size), batch_size):
            todo, existing = [], {}
            for t in page:
                if limit is not None and chosen + len(todo) >= limit:
                    s.stopped_at_limit = True
                    break
                s.seen += 1
                if needs_prediction(t, version, only_missing):
                    todo.append(as_task(t))
                    existing[todo[-1]["id"]] = prediction_versions(t).count(version)
                else:
                    with lock:
                        s.already += 1
                    bar.update(1)
            chosen += len(todo)
            if dry_run:
                s.predicted += len(todo)
                bar.update(len(todo))
            elif todo:
                for o in runner.predict_all(todo, run_one, limit=concurrency):
                    runner.log_dropped(o, req.target)
                    if o.prediction is None:
                        with lock:
                            s.failed.append({"task": o.task_id, "reason": o.error})
                    else:
                        writer.put(o, existing[o.task_id])
            postfix()
            if s.stopped_at_limit:
                break
    except KeyboardInterrupt:
        s.interrupted = True
    finally:
        if writer is not None:
            writer.close()  # what finished is written, whatever stopped the loop
        bar.close()
        s.seconds = time.perf_counter() - t0
    if not dry_run and s.predicted + s.already:
        s.project_version = _use_version(client, project_id, version)
    return s


def _use_version(client, project_id: int, version: str) -> str:
    """Make the project's model_version the one just written (Label Studio scores and sorts only those)."""
    try:
        before = lsapi.use_version(client, project_id, version)
    except Exception as e:  # noqa: BLE001 - the predictions are stored; say why the column stays empty
        log.warning("Label Studio project %s: model_version not set to %r: %s", project_id, version, e)
        return f"NOT set to {version} ({type(e).__name__}: {str(e)[:200]}): the Prediction score column stays empty"
    if before is None:
        return f"{version} (unchanged)"
    return f"{version} (was {before!r}): the Data Manager's Prediction score column scores and sorts these"
