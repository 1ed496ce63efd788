"""One training at a time per Label Studio project, its progress and outcome, and starting one in the background.

State lives in ``MODEL_DIR/training/<project id>/``::

    lock          flock()-ed by the training process for as long as it lives (a process killed lets it go)
    status.json   what the training does now or did last (written atomically by the training process)
    runs/<id>/    each run's export, ultralytics run folder, metrics and log (the last ``LF_TRAIN_RUNS_KEPT``)

``start(project_yaml, project_id)`` (the backend's *Start Training*) takes the lock itself, so two requests at
once cannot both start one: the second is answered "already training". The lock's file descriptor is handed to
the training process (``label-factory train --project ... --lock-fd N``), which holds it to its end; the
caller's copy is closed at once. A thread of the caller waits for the process and records how it ended when the
process could not (killed, crashed). ``metrics()`` is what the backend's ``/metrics`` shows: each project's
training, and a training whose process is gone without saying how it ended shows as ``interrupted``."""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from pipeline import settings
from pipeline.atomic import save_text

log = logging.getLogger(__name__)

STATUS = "status.json"
LOCK = "lock"
RUNNING = ("starting", "exporting", "training", "scoring", "promoting")  # states of a training in progress
ALREADY = "already training"


def root() -> Path:
    return settings.Paths.read().model_dir.resolve() / "training"


def state_dir(project_id) -> Path:
    pid = str(project_id)
    if not pid.isdigit():
        raise ValueError(f"Label Studio project id {pid!r}: expected a number")
    return root() / pid


def read_status(project_id) -> Optional[dict]:
    try:
        return json.loads((state_dir(project_id) / STATUS).read_text())
    except (OSError, ValueError):
        return None


def write_status(project_id, status: dict) -> None:
    save_text(state_dir(project_id) / STATUS, json.dumps(status, indent=1, default=str))


def update_status(project_id, /, **changes) -> dict:
    """The status with ``changes`` applied, written (only the training process writes while it lives)."""
    status = {**(read_status(project_id) or {}), **changes, "updated_at": time.time()}
    write_status(project_id, status)
    return status


def try_lock(project_id) -> Optional[int]:
    """An open file descriptor holding the project's training lock, or None when a training holds it."""
    d = state_dir(project_id)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def held(project_id) -> bool:
    """Whether a training process holds the project's lock now."""
    path = state_dir(project_id) / LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing lets the shared probe go
    return False


def _ended(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


def _wait(proc: subprocess.Popen, project_id, log_file: Path) -> None:
    code = proc.wait()
    status = read_status(project_id) or {}
    if status.get("pid") == proc.pid and status.get("state") in RUNNING:
        update_status(project_id, state="failed", finished_at=time.time(),
                      error=f"the training process {_ended(code)} while {status.get('state')}; the served student "
                            f"is unchanged (log: {log_file})")
    log.info("training of project %s: process %d %s", project_id, proc.pid, _ended(code))


def start(project_yaml: Path, project_id) -> dict:
    """Start a training of ``project_id`` in the background, unless one runs: ``{"state": "started", ...}`` or
    ``{"state": "already training", ...}`` with the running one's status. Raises ``job.TrainingError`` when the
    project serves no student (nothing a training could promote into)."""
    from pipeline.config import load_project
    from pipeline.distill.job import served_weights
    served_weights(load_project(project_yaml))
    fd = try_lock(project_id)
    if fd is None:
        status = read_status(project_id) or {}
        log.info("Start Training for project %s: already training (pid %s, %s)", project_id, status.get("pid"),
                 status.get("state"))
        return {"state": ALREADY, "status": status}
    try:
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}-{threading.get_ident() % 10000}"
        run = state_dir(project_id) / "runs" / run_id
        run.mkdir(parents=True)
        log_file = run / "train.log"
        cmd = [sys.executable, "-m", "pipeline.cli", "train", "--project", str(Path(project_yaml).resolve()),
               "--ls-project", str(project_id), "--run", str(run), "--lock-fd", str(fd)]
        write_status(project_id, {"project_id": int(project_id), "state": "starting", "run": str(run),
                                  "log": str(log_file), "started_at": time.time(), "pid": None})
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    pass_fds=(fd,), env={**settings.process_environment(), "PYTHONUNBUFFERED": "1"},
                                    start_new_session=True)
        update_status(project_id, pid=proc.pid)
    finally:
        os.close(fd)  # the training process holds the lock from here on
    threading.Thread(target=_wait, args=(proc, project_id, log_file), name=f"training-{project_id}",
                     daemon=True).start()
    log.info("Start Training for project %s: training process %d started (log %s)", project_id, proc.pid, log_file)
    return {"state": "started", "pid": proc.pid, "run": str(run)}


def metrics() -> dict:
    """Label Studio project id -> its training's status (``interrupted`` when its process died without a word)."""
    out = {}
    base = root()
    if not base.is_dir():
        return out
    for d in sorted(base.iterdir()):
        if not d.name.isdigit():
            continue
        status = read_status(d.name)
        if status is None:
            continue
        if status.get("state") in RUNNING and not held(d.name):
            status = {**status, "state": "interrupted",
                      "error": f"the training process ({status.get('pid')}) is gone; the served student is unchanged"}
        out[d.name] = status
    return out
