"""A project's training, start to end: what *Start Training* runs (``label-factory train --project``).

1. export the Label Studio project's reviewed tasks (pipeline/distill/export.py) into the run folder;
2. train a student there (pipeline/distill/train.py; ``LF_TRAIN_*`` settings: from ``yolo11n.yaml`` unless
   told otherwise), with its progress (epoch, losses) in the project's status;
3. score it and the served student on the export's test split, the reviewed tasks neither trained on
   (pipeline/distill/promote.py), and promote it only if its held-out AP50:95 beats the served one's;
4. promote = copy its weights over the served file atomically (pipeline/atomic.py): the project YAML's
   ``route.student``, else its ``providers.grounder.model`` when the grounder is a student. The backend's
   ``model_version`` names the weights by their hash, so it changes with them, and the student grounder
   reloads a replaced file.

Everything before step 4 writes only inside the run folder: a training that crashes or is killed leaves the
served weights, and so the served ``model_version``, as they were. One training at a time per project
(pipeline/distill/runs.py holds the lock)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

from pipeline import settings
from pipeline.atomic import save_atomic, save_text
from pipeline.config import ProjectConfig, load_project
from pipeline.distill import runs
from pipeline.model_version import base_version

log = logging.getLogger(__name__)

OUTCOME = "outcome.json"


class TrainingError(RuntimeError):
    """The project cannot be trained (no student to promote into, nothing reviewed, a bad setting, ...)."""


def served_weights(cfg: ProjectConfig) -> Path:
    """The file the project serves its student from: ``route.student``, else a student grounder's model."""
    if cfg.route is not None:
        return Path(cfg.route.student).expanduser()
    if cfg.providers.grounder.kind == "student":
        return Path(cfg.providers.grounder.model).expanduser()
    raise TrainingError(f"project {cfg.project_name!r} serves no student, so a trained one has nowhere to go: set "
                        "route.student (the student first, the cascade for what it is unsure of) or "
                        "providers.grounder: {kind: student, model: PATH} in the project YAML to the weights file "
                        "to serve (it need not exist before the first training)")


def _copy_into(dst: Path, src: Path) -> None:
    with open(src, "rb") as f:
        save_atomic(dst, lambda out: shutil.copyfileobj(f, out, 1 << 20))


def _prune(keep: int, current: Path) -> None:
    """Only the newest ``keep`` run folders (the current one always)."""
    folders = sorted((p for p in current.parent.iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in folders[:-keep]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)


def train_project(project_yaml: Path, project_id: int, client, label_studio_url: str, fetch: Callable,
                  run: Path, progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Export, train, score and maybe promote (module docstring); returns the outcome (also ``run/outcome.json``).
    ``progress(changes)`` is told each step (the status file's fields)."""
    from pipeline.distill.export import ExportError, export_project
    from pipeline.distill.promote import held_out, promote, score
    from pipeline.distill.split import parse_ratios
    from pipeline.distill.train import TrainConfig, TrainError, train
    from pipeline.providers.base import ProviderError
    from pipeline.providers.yolo import UltralyticsMissing

    tell = progress or (lambda changes: None)
    t = settings.Training.read()
    cfg = load_project(project_yaml)
    served = served_weights(cfg)
    before = base_version(cfg)
    try:
        ratios = parse_ratios(t.split)
    except ValueError as e:
        raise TrainingError(f"LF_TRAIN_SPLIT: {e}") from None
    run = Path(run).resolve()
    data, out = run / "export", run / "student"

    tell({"state": "exporting", "served_weights": str(served), "model_version_before": before})
    try:
        manifest = export_project(client, project_id, data, "yolo", fetch, ratios=ratios,
                                  label_studio_url=label_studio_url, progress=False)
    except ExportError as e:
        raise TrainingError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - Label Studio unreachable, refused, ...: one line says which
        raise TrainingError(f"cannot export Label Studio project {project_id} from {label_studio_url}: "
                            f"{type(e).__name__}: {str(e)[:300]}") from e
    counts = {s: c["images"] for s, c in manifest["counts"].items()}
    test = held_out(data, "test")
    if not any(len(d) for d in test.truth):
        raise TrainingError(f"the held-out (test) split has no reviewed box ({counts}): the new student could not "
                            "be compared with the served one; review more tasks (or change LF_TRAIN_SPLIT)")

    epochs_total = t.epochs

    def epoch_done(trainer) -> None:
        losses = {k.split("/")[-1]: round(float(v), 4) for k, v in trainer.label_loss_items(trainer.tloss).items()}
        tell({"state": "training", "epoch": trainer.epoch + 1, "epochs": epochs_total, "losses": losses})

    tell({"state": "training", "images": counts, "epoch": 0, "epochs": epochs_total})
    tc = TrainConfig(data=data, out=out, model=t.model, epochs=t.epochs, imgsz=t.imgsz, batch=t.batch, device=t.device,
                     workers=t.workers, patience=t.epochs, seed=0, plots=False, amp=False)
    try:
        metrics = train(tc, callbacks={"on_train_epoch_end": epoch_done})
    except (TrainError, UltralyticsMissing) as e:
        raise TrainingError(str(e)) from None
    weights = out / metrics["weights"]

    tell({"state": "scoring", "val": {k: metrics[k] for k in ("mAP50", "mAP50-95", "precision", "recall")}})
    device = "cpu" if t.device == "cpu" else "auto"
    candidate = score(weights, test, device)
    served_score, served_note = None, "nothing is served yet"
    if served.is_file():
        try:
            served_score = score(served, test, device)
        except ProviderError as e:  # a served file that cannot be loaded is no student to keep
            served_note = f"the served weights cannot be scored ({e})"
    ok, why = promote(candidate, served_score, min_gain=t.min_gain)
    if served_score is None:
        why = why.replace("nothing is served yet", served_note)

    if ok:
        tell({"state": "promoting"})
        _copy_into(served, weights)
    after = base_version(load_project(project_yaml))
    outcome = {"promoted": ok, "why": why, "candidate": candidate, "served": served_score, "images": counts,
               "val": {k: metrics[k] for k in ("mAP50", "mAP50-95", "precision", "recall")},
               "train_seconds": metrics["train_seconds"], "weights_sha256": metrics["weights_sha256"],
               "served_weights": str(served), "model_version_before": before, "model_version": after}
    save_text(run / OUTCOME, json.dumps(outcome, indent=1, default=str))
    log.info("project %s: %s (%s); serving %s", project_id, "promoted" if ok else "not promoted", why, after)
    _prune(t.runs_kept, run)
    return outcome


def run_training(project_yaml: Path, project_id: int, client, label_studio_url: str, fetch: Callable,
                 run: Optional[Path] = None, lock_fd: Optional[int] = None) -> dict:
    """``train_project`` under the project's lock (taken here, or ``lock_fd`` handed over by ``runs.start``),
    recording each step in its status; raises TrainingError (recorded as ``failed``) or returns the outcome."""
    fd = lock_fd if lock_fd is not None else runs.try_lock(project_id)
    if fd is None:
        raise TrainingError(f"project {project_id}: {runs.ALREADY} ({(runs.read_status(project_id) or {}).get('run')})")
    try:
        if run is None:
            run = runs.state_dir(project_id) / "runs" / (time.strftime("%Y%m%d-%H%M%S", time.gmtime())
                                                         + f"-{os.getpid()}")
        Path(run).mkdir(parents=True, exist_ok=True)
        fresh = {"project_id": int(project_id), "state": "starting", "run": str(run), "pid": os.getpid()}
        if lock_fd is not None:  # started by runs.start: its status (start time, log) goes on
            runs.update_status(project_id, **fresh)
        else:
            runs.write_status(project_id, {**fresh, "started_at": time.time(), "log": None})

        def progress(changes: dict) -> None:
            runs.update_status(project_id, **changes)
        try:
            outcome = train_project(project_yaml, project_id, client, label_studio_url, fetch, Path(run), progress)
        except Exception as e:
            runs.update_status(project_id, state="failed", finished_at=time.time(), error=f"{type(e).__name__}: {e}")
            raise
        runs.update_status(project_id, state="promoted" if outcome["promoted"] else "not promoted",
                           finished_at=time.time(), outcome=outcome, error=None)
        return outcome
    finally:
        os.close(fd)
