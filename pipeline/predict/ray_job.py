"""``label-factory predict --ray``: the batch job of pipeline/predict/job.py spread over a Ray cluster.

The driver (this process) lists the project's tasks, picks the ones to predict (``batch.needs_prediction``,
``--limit``) and hands them, a few per call, to model-holding Ray actors. Each actor loads the project
once (``runner.load`` + ``runner.prepare``: the backend's pipeline, label mapping, identify plan and
model_version) and answers a call with ``runner.predict_all`` over ``Request.run``: the same per-task
isolation and failure reasons as the single-process job. Nothing here predicts differently.

Why actors with our own dispatch and not Ray Data's ``map_batches``: the job's output is not a data
set but one Label Studio write per task, made by one writer that must know exactly which task was
predicted by which attempt. With actors the driver sees each call's outcome as it lands, so it can
retry only the tasks of an actor that died, count the attempts of each task (a task that kills its
worker every time is reported, not retried forever) and write each prediction once. Ray Data would
re-execute lost blocks on its own (lineage), hide the attempt count, and add pyarrow, a streaming
executor and its start-up to a job whose unit of work is seconds of GPU time per image.

Nothing lost, nothing twice (the closing note of issue 13 and the README say the same):

* The driver is the only writer, through ``writer.PredictionWriter`` (the single-process job's writer):
  one bulk request at a time (``POST /api/projects/{id}/import/predictions``), at most
  ``WriteOptions.batch`` predictions each and ``WriteOptions.rate`` per second, flushed at least every
  ``WriteOptions.flush_seconds``.
* Label Studio itself is the bookkeeping: a re-run lists every task with its predictions and skips
  those that carry this model_version (``--only-missing``). A driver killed at any point, even between
  a write and anything after it, leaves either the prediction (the re-run skips the task) or not (the
  re-run predicts it): there is no second record that could disagree with Label Studio.
* An actor that dies (killed, OOM, node lost) never returned its call, so nothing of that call was
  written; a fresh actor replaces it and the call's tasks go back to the queue as suspects: each runs
  alone on an idle actor, with nothing queued behind it. Only a worker that dies while running one
  suspect alone charges that task, so a task that kills every worker is reported after
  ``max_attempts`` and the others of its call are predicted. A task is handed out again only after its
  previous call failed, and an outcome for a task that is not outstanding is dropped, so one run
  writes a task at most once.
* A write whose answer is lost (timeout, connection reset, 5xx) may have landed: before trying it
  again the writer asks Label Studio which of its tasks now carry one more prediction of this
  model_version than when they were listed, and sends only the others. A refused write (4xx) is split
  into single ``predictions.create`` calls so each refused task gets its own reason
  (pipeline/predict/writer.py).
* Two drivers on one project at the same time are not supported (Label Studio has no idempotency key).
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from label_studio_sdk.label_interface import LabelInterface
from tqdm import tqdm

from pipeline.config import ProjectConfig
from pipeline.labelstudio.target import find_target
from pipeline.predict import identify, runner
from pipeline.predict import job as batch
from pipeline.predict.writer import PredictionWriter, WriteOptions
from pipeline.settings import process_environment

log = logging.getLogger(__name__)

# passed from the driver to every actor, so the whole cluster resolves the YAML as the driver did
FORWARDED_ENV_PREFIXES = ("LF_",)
FORWARDED_ENV = ("ALLOWED_IMAGE_HOSTS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PREDICT_CONCURRENCY")
_SECRET_HINTS = ("TOKEN", "KEY", "SECRET", "PASS")


@dataclass
class RayOptions:
    address: Optional[str] = None  # None/"": a local Ray on this machine; "auto", "ray://host:10001": a cluster
    actors: Optional[int] = None  # default: one per GPU, else one per cpus_per_actor CPUs
    cpus_per_actor: Optional[float] = None
    gpus_per_actor: Optional[float] = None
    tasks_per_call: int = 4  # tasks handed to an actor at once (2 calls queued per actor)
    max_attempts: int = 3  # a task whose worker died under it this often, running alone, is reported
    start_timeout: float = 900.0  # seconds to wait for the first actor (models load in it)
    wait_for_all: bool = False  # hand out work only once every actor is ready (balanced start, for timing)


@dataclass(frozen=True)
class ActorPlan:
    actors: int
    cpus: float
    gpus: float

    def describe(self) -> str:
        return f"{self.actors} actor(s), {self.cpus:g} CPU + {self.gpus:g} GPU each"


def plan_actors(resources: dict, actors: Optional[int] = None, cpus: Optional[float] = None,
                gpus: Optional[float] = None) -> ActorPlan:
    """Actor count and resources from the flags, defaults from the cluster's resources: one actor per
    GPU (or per ``gpus`` share of one) with its share of the CPUs (1-4) when the cluster has GPUs,
    else one per CPU."""
    cpu_total, gpu_total = float(resources.get("CPU", 1) or 1), float(resources.get("GPU", 0) or 0)
    if gpus is None:
        gpus = 1.0 if gpu_total >= 1 else 0.0
    if cpus is None:
        cpus = float(max(1, min(4, int(cpu_total // (gpu_total / gpus))))) if gpus and gpu_total else 1.0
    if actors is None:
        by_gpu = int(gpu_total // gpus) if gpus else None
        by_cpu = int(cpu_total // cpus) if cpus else None
        actors = max(1, min(x for x in (by_gpu, by_cpu) if x is not None) if (by_gpu or by_cpu) else 1)
    if actors < 1 or cpus < 0 or gpus < 0:
        raise batch.JobError("--actors must be at least 1 and resources per actor not negative")
    return ActorPlan(int(actors), float(cpus), float(gpus))


def forwarded_env(environ=None) -> dict:
    """The driver's settings every actor gets (runtime_env): LF_* and the image/host switches, no secrets."""
    environ = process_environment() if environ is None else environ
    return {k: v for k, v in environ.items()
            if (k.startswith(FORWARDED_ENV_PREFIXES) or k in FORWARDED_ENV) and not any(h in k for h in _SECRET_HINTS)}


# -- the actor ------------------------------------------------------------------------------------
def _project_file(path: str, text: str) -> str:
    """``path`` when this node has it with the driver's content, else a private copy of the text."""
    try:
        if Path(path).read_text() == text:
            return path
    except OSError:
        pass
    out = Path(tempfile.mkdtemp(prefix="label-factory-project-")) / Path(path).name
    out.write_text(text)
    return str(out)


class PredictActor:
    """One model-holding worker: loads the project once, then predicts the tasks it is handed.
    Plain class; ``run`` makes it a Ray actor with the resources of the ActorPlan."""

    def __init__(self, project_path: str, project_text: str, project_id: int, label_config: str,
                 label_studio_url: str, api_key: str, threads: int = 1, concurrency: Optional[int] = None):
        try:
            import torch
            torch.set_num_threads(max(1, int(threads)))
        except ImportError:
            pass
        cfg, pipeline = runner.load(_project_file(project_path, project_text))
        identify.for_job(cfg)
        pipeline.load()
        self.request = runner.prepare(cfg, pipeline, str(project_id), LabelInterface(config=label_config))
        self.concurrency = concurrency
        self.fetch = runner.fetcher(cfg, label_studio_url, api_key)

    def ready(self) -> dict:
        return {"version": self.request.version, "pid": os.getpid()}

    def predict(self, tasks: list[dict]) -> list[runner.TaskOutcome]:
        return runner.predict_all(tasks, lambda t: self.request.run(t, fetch=self.fetch), limit=self.concurrency)


# -- the driver -----------------------------------------------------------------------------------
# Ray's switch for "a single machine, no cluster": every Ray process binds 127.0.0.1, not the host's address
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
WORKER_DIED = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "OutOfMemoryError")


def _is_worker_death(e: BaseException) -> bool:
    return any(c.__name__ in WORKER_DIED for c in type(e).__mro__)


def _short(e: BaseException, n: int = 300) -> str:
    text = str(e).strip()
    if getattr(e, "actor_init_failed", False):  # Ray's message is the actor's traceback: its last line says why
        text = text.splitlines()[-1]
    text = " ".join(text.split())
    return f"{type(e).__name__}: {text[:n]}"


# Ray's token authentication: the mode, and where a process finds the cluster's token
AUTH_MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
AUTH_HINT = ("the Ray cluster at {address} uses token authentication and refused this driver: give it the "
             "cluster's token (RAY_AUTH_TOKEN=..., or RAY_AUTH_TOKEN_PATH=<file>, or ~/.ray/auth_token); "
             "docs/guides/scale-out.md")


def ray_token_available(environ=None, home: Optional[Path] = None) -> bool:
    """This process has a Ray authentication token to send: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
    names, or ~/.ray/auth_token (where Ray itself looks, in that order)."""
    environ = process_environment() if environ is None else environ
    if environ.get(TOKEN_ENV, "").strip():
        return True
    for path in (environ.get(TOKEN_PATH_ENV), (home or Path.home()) / ".ray" / "auth_token"):
        try:
            if path and Path(path).read_text().strip():
                return True
        except OSError:
            pass
    return False


def connect(address: Optional[str]) -> bool:
    """Connect to Ray (or reuse the connection this process has); True when this call started it.

    Given an address, Ray connects without its token unless RAY_AUTH_MODE=token (it turns authentication on
    by itself only for a cluster it finds locally), and a cluster with token authentication refuses such a
    driver. So when a token is at hand and the mode is not set, it is sent: a cluster without
    authentication accepts that driver too."""
    if not address:  # a local Ray on this machine listens on loopback only (read when ray is imported)
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")
    elif AUTH_MODE_ENV not in process_environment() and ray_token_available():
        os.environ[AUTH_MODE_ENV] = "token"
        if "ray" in sys.modules:  # Ray read its config when imported: read it again, as ray itself does then
            from ray._raylet import Config
            Config.initialize("")
    import ray
    if ray.is_initialized():
        return False
    if not address:
        ray.init(include_dashboard=False, log_to_driver=False)
        return True
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - Ray wraps the refusal in a ConnectionError
        if _refused_token(e):
            raise batch.JobError(AUTH_HINT.format(address=address)) from None
        raise
    return True


def _refused_token(e: BaseException) -> bool:
    while e is not None:
        if type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


@dataclass
class _Actor:
    handle: Any
    index: int
    ready: bool = False
    calls: int = 0  # calls in flight (it runs them one after the other)
    alone: bool = False  # running a suspect's call, with nothing queued behind it
    dead: bool = False


@dataclass
class RayReport:
    plan: ActorPlan
    address: str
    actors_started: int = 0
    actors_died: int = 0
    retried_tasks: int = 0  # task attempts handed out again after their actor died
    start_seconds: float = 0.0  # until work was first handed out (the first actor, or all, had loaded the models)
    init_errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Ray ({self.address}): {self.plan.describe()}; work started after {self.start_seconds:.1f} s "
               "(models loading)",
               f"actors died: {self.actors_died} (replaced), task attempts retried after a worker died: "
               f"{self.retried_tasks}"]
        return out

    def to_dict(self) -> dict:
        return {"address": self.address, "actors": self.plan.actors, "cpus_per_actor": self.plan.cpus,
                "gpus_per_actor": self.plan.gpus, "actors_started": self.actors_started,
                "actors_died": self.actors_died, "retried_tasks": self.retried_tasks,
                "start_seconds": round(self.start_seconds, 3)}


def run(client, cfg: ProjectConfig, project_id: int, *, project_path: str, label_studio_url: str, api_key: str,
        options: RayOptions = RayOptions(), only_missing: bool = True, limit: Optional[int] = None,
        batch_size: int = 50, progress: bool = True, concurrency: Optional[int] = None,
        write: WriteOptions = WriteOptions(), actor_class: type = PredictActor,
        on_dispatch: Optional[Callable[[Any, list[dict]], None]] = None
        ) -> tuple[batch.Summary, RayReport]:
    """Predict the project's tasks on Ray actors and store the predictions in Label Studio.

    Same arguments and Summary as ``batch.run`` (``write``: the writer's batch, rate cap and flush time);
    ``concurrency`` is per actor. ``actor_class`` and
    ``on_dispatch(actor handle, tasks)`` (called as a call is submitted) are for tests."""
    try:
        import ray
    except ImportError:
        raise batch.JobError("--ray needs Ray: pip install 'label-factory[ray]'") from None
    if batch_size < 1 or options.tasks_per_call < 1 or options.max_attempts < 1:
        raise batch.JobError("--batch-size, tasks per call and attempts must be at least 1")
    project = client.projects.get(project_id)
    label_interface = LabelInterface(config=project.label_config)
    try:
        target = find_target(label_interface, cfg)
    except ValueError as e:  # UnsupportedConfig
        raise batch.JobError(f"Label Studio project {project_id}: {e}") from None
    identify.for_job(cfg)
    version = identify.current_version(cfg, str(project_id))
    project_text = Path(project_path).read_text()

    owns_ray = connect(options.address)
    report = RayReport(plan_actors(ray.cluster_resources(), options.actors, options.cpus_per_actor,
                                   options.gpus_per_actor), options.address or "local")
    plan = report.plan
    env = forwarded_env()
    remote_cls = ray.remote(actor_class).options(
        num_cpus=plan.cpus, num_gpus=plan.gpus, max_restarts=0, max_task_retries=0,
        runtime_env={"env_vars": env} if env else None)
    log.info("Ray: %s", plan.describe())

    s = batch.Summary(project_id, version, only_missing=only_missing, limit=limit)
    lock = threading.Lock()
    total = getattr(project, "task_number", None)
    bar = tqdm(total=total if isinstance(total, int) else None, desc="tasks", unit="task", disable=not progress)

    def bar_done(n: int) -> None:
        with lock:
            bar.update(n)
            bar.set_postfix(predicted=s.predicted, failed=len(s.failed), skipped=s.already, refresh=False)

    writer = PredictionWriter(client, project_id, version, s, target.layout.regions, lock=lock, on_done=bar_done,
                              options=write)

    actors: list[_Actor] = []
    starting: dict = {}  # ready() ref -> _Actor
    inflight: dict = {}  # predict() ref -> (_Actor, tasks)
    outstanding: dict = {}  # task id -> attempts so far (handed out, no outcome yet)
    existing: dict = {}  # task id -> predictions of this version it had when listed (when not 0)
    pending: deque = deque()  # (tasks, suspect) waiting for an actor; suspect: one task whose worker died under it
    respawns_left = plan.actors * options.max_attempts

    def start_actor() -> None:
        a = _Actor(remote_cls.remote(project_path, project_text, project_id, project.label_config, label_studio_url,
                                     api_key, max(1, int(plan.cpus)), concurrency), len(actors))
        actors.append(a)
        starting[a.handle.ready.remote()] = a
        report.actors_started += 1

    def fail(task_id, reason: str) -> None:
        outstanding.pop(task_id, None)
        log.warning("task %s: no prediction: %s", task_id, reason)
        with lock:
            s.failed.append({"task": task_id, "reason": reason})
        bar_done(1)

    def selected() -> Iterator[dict]:
        """The tasks to predict, as batch.run picks them (only-missing, --limit)."""
        chosen = 0
        for page in batch._batches(batch.list_tasks(client, project_id, batch_size), batch_size):
            for t in page:
                if limit is not None and chosen >= limit:
                    s.stopped_at_limit = True
                    return
                with lock:
                    s.seen += 1
                if batch.needs_prediction(t, version, only_missing):
                    chosen += 1
                    task = batch.as_task(t)
                    had = batch.prediction_versions(t).count(version)  # --no-only-missing: a lost write is judged by it
                    if had:
                        existing[task["id"]] = had
                    yield task
                else:
                    with lock:
                        s.already += 1
                    bar_done(1)

    todo = selected()
    exhausted = False
    high_water = plan.actors * options.tasks_per_call * 4 + batch_size

    def refill() -> None:
        nonlocal exhausted
        queued = sum(len(c) for c, _ in pending)
        while not exhausted and queued < high_water:
            chunk = []
            for t in todo:
                chunk.append(t)
                if len(chunk) >= options.tasks_per_call:
                    break
            else:
                exhausted = True
            if chunk:
                pending.append((chunk, False))
                queued += len(chunk)

    def dispatch() -> None:
        """Up to 2 calls per actor (one running, one queued); a suspect's call goes to an idle actor and
        nothing is queued behind it, so when that worker dies the suspect is the only task it ran."""
        if not report.start_seconds:
            return
        for a in actors:
            while a.ready and not a.dead and not a.alone and pending:
                chunk, suspect = pending[0]
                if a.calls >= (1 if suspect else 2):
                    break
                pending.popleft()
                for t in chunk:
                    outstanding.setdefault(t["id"], 0)
                ref = a.handle.predict.remote(chunk)
                inflight[ref] = (a, chunk, suspect)
                a.calls += 1
                a.alone = suspect
                if on_dispatch is not None:
                    on_dispatch(a.handle, chunk)

    def retire(a: _Actor, why: str) -> None:
        nonlocal respawns_left
        if a.dead:
            return
        a.dead = True
        report.actors_died += 1
        log.warning("actor %d died (%s)", a.index, why)
        try:
            ray.kill(a.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if respawns_left > 0:
            respawns_left -= 1
            start_actor()

    def on_ready(ref, a: _Actor) -> None:
        try:
            info = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - the models did not load there: no replacement, same result
            a.dead = True
            report.init_errors.append(_short(e, 2000))
            log.error("actor %d could not start: %s", a.index, _short(e, 2000))
        else:
            if info["version"] != version:
                raise batch.JobError(
                    f"an actor answers model_version {info['version']!r}, the driver expects {version!r}: the "
                    "project YAML, the LF_* settings or the identify index (MODEL_DIR) differ between this machine "
                    "and the cluster's nodes")
            a.ready = True
        ready = any(b.ready and not b.dead for b in actors)
        if ready and not report.start_seconds and (not options.wait_for_all or all(b.ready or b.dead for b in actors)):
            report.start_seconds = time.perf_counter() - t_start

    def on_result(ref, a: _Actor, chunk: list[dict], suspect: bool) -> None:
        a.calls -= 1
        a.alone = False
        try:
            outcomes = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - sorted: a dead worker's tasks are retried, others fail
            if not _is_worker_death(e):
                for t in chunk:
                    fail(t["id"], _short(e))
                return
            retire(a, _short(e, 200))
            for t in chunk:
                tid = t["id"]
                if tid not in outstanding:
                    continue
                report.retried_tasks += 1
                if not suspect:  # any task of the call, or of the one before it, may have killed it
                    pending.appendleft(([t], True))
                    continue
                outstanding[tid] += 1  # it ran alone: it is the one
                if outstanding[tid] >= options.max_attempts:
                    report.retried_tasks -= 1
                    fail(tid, f"WorkerDied: the worker predicting this task died {outstanding[tid]} time(s) "
                              f"while it ran alone (last: {_short(e, 200)})")
                else:
                    pending.appendleft(([t], True))
            return
        for o in outcomes:
            if o.task_id not in outstanding:  # not handed out (any more): never written twice
                log.warning("task %s: a second outcome was dropped", o.task_id)
                continue
            del outstanding[o.task_id]
            runner.log_dropped(o, target)
            if o.prediction is None:
                fail(o.task_id, o.error)
            else:
                writer.put(o, existing.pop(o.task_id, 0))

    t_start = time.perf_counter()
    try:
        for _ in range(plan.actors):
            start_actor()
        while True:
            refill()
            dispatch()
            if exhausted and not pending and not inflight:
                break
            if not inflight and not starting:
                raise batch.JobError("no actor could run the job: " + ("; ".join(report.init_errors[-1:])
                                     or "every actor died and the replacements are used up"))
            if not any(a.ready and not a.dead for a in actors) and not inflight \
                    and time.perf_counter() - t_start > options.start_timeout:
                raise batch.JobError(f"no actor was ready after {options.start_timeout:.0f} s (cluster resources "
                                     f"{ray.cluster_resources()} for {plan.describe()}?)")
            done, _ = ray.wait(list(inflight) + list(starting), num_returns=1, timeout=1.0)
            for ref in done:
                if ref in starting:
                    on_ready(ref, starting.pop(ref))
                else:
                    on_result(ref, *inflight.pop(ref))
    except KeyboardInterrupt:
        s.interrupted = True
    finally:
        writer.close()  # what finished is written, whatever stopped the loop
        bar.close()
        for a in actors:
            if not a.dead:
                try:
                    ray.kill(a.handle, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
        if owns_ray:
            ray.shutdown()
        t_first = t_start + report.start_seconds
        s.seconds = time.perf_counter() - (t_first if report.start_seconds else t_start)
    if s.predicted + s.already:
        s.project_version = batch._use_version(client, project_id, version)  # as `predict` does at the end
    return s, report


def main(args, client, cfg: ProjectConfig, project_id: int, label_studio_url: str, api_key: str,
         write: WriteOptions = WriteOptions()) -> int:
    """The ``predict --ray`` end of pipeline/predict/cli.py: run, print the summary (exit 130 when interrupted)."""
    import json

    options = RayOptions(address=args.ray or None, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                         gpus_per_actor=args.gpus_per_actor, tasks_per_call=args.tasks_per_call)
    s, report = run(client, cfg, project_id, project_path=args.project, label_studio_url=label_studio_url,
                    api_key=api_key, options=options, only_missing=args.only_missing, limit=args.limit,
                    batch_size=args.batch_size, progress=not args.quiet, concurrency=args.concurrency, write=write)
    if args.json:
        print(json.dumps({**s.to_dict(), "ray": report.to_dict()}, indent=1, default=str))
    else:
        print("\n".join(s.lines() + report.lines()))
    return 130 if s.interrupted else 0
