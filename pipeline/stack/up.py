"""The one-command local stack: Label Studio, the ML backend under gunicorn, a project with samples.

The console shows what a person needs (progress, then the URL, login, API token and what to try
next); request logs and progress bars stay in the services' log files. Every child service is
stopped when ``up`` ends, also when one of them never came up. While it runs, an edited project
YAML reaches the backend (a tiny-models copy is rewritten): its new model_version lets *Retrieve
Predictions* predict the selected tasks again. ``--masks brush|polygon`` makes the sample project a mask
one; once its predictions are in, the project gets the Data Manager tab of the least certain tasks."""
from __future__ import annotations

import hashlib
import logging
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pipeline.config import ENV_OVERRIDES, ConfigError, load_project
from pipeline.labelstudio import lsapi
from pipeline.model_version import model_version
from pipeline.samples import write_samples
from pipeline.settings import process_environment
from pipeline.stack.ls_server import LabelStudio, start_label_studio
from pipeline.stack.models import check_real_models, edited_gates, quiet_model_building, tiny_project
from pipeline.stack.processes import WILDCARD_HOSTS, Service, free_port, local_host

log = logging.getLogger("label-factory.up")

BACKEND_CMD = [sys.executable, "-m", "backends._wsgi"]


def say(text: str = "") -> None:
    print(text, flush=True)


def public_host(host: str) -> str:
    """What another machine puts in its browser for a service bound to ``host``."""
    return socket.gethostname() if host in WILDCARD_HOSTS else host


@dataclass
class Stack:
    label_studio: Optional[LabelStudio] = None
    backend: Optional[Service] = None
    project_id: Optional[int] = None
    backend_url: str = ""
    notes: list = field(default_factory=list)

    def stop(self) -> None:
        for svc in (self.backend, self.label_studio):
            if svc is not None:
                try:
                    svc.stop()
                except Exception as e:  # noqa: BLE001 - keep stopping the rest
                    log.warning("stopping %s: %s", svc, e)


GUNICORN_DEFAULTS = {"WORKERS": "1", "THREADS": "32", "LOG_LEVEL": "INFO"}  # as in the Dockerfile


def start_backend(root: Path, project_yaml: Path, ls: LabelStudio, port: Optional[int], timeout: float,
                  host: str = "127.0.0.1", tiny: bool = False) -> Service:
    """The ML backend under gunicorn, answering /health; stopped again if it does not within ``timeout``.

    ``tiny``: the YAML names the tiny models, so LF_* model overrides of this shell are not passed on."""
    port = free_port(port, host)
    env = {k: v for k, v in process_environment().items() if not (tiny and k in ENV_OVERRIDES)}
    env.update({"PROJECT_CONFIG": str(project_yaml), "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token,
                "MODEL_DIR": str(root / "model-dir"), "HOST": host, "PORT": str(port)})
    for key, default in GUNICORN_DEFAULTS.items():  # the image's defaults; the shell's own values win
        env.setdefault(key, default)
    svc = Service("ML backend", BACKEND_CMD, env, root / "backend.log")
    svc.url = f"http://{local_host(host)}:{port}"
    try:
        svc.wait_http(f"{svc.url}/health", timeout)
    except BaseException:
        svc.stop()  # never answered (or Ctrl-C): it must not outlive `up`
        raise
    return svc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample_title(cfg, masks: Optional[str] = None) -> str:
    """The sample project's title: the YAML's project_name, ``-brush`` / ``-polygon`` added for a mask one."""
    return f"{cfg.project_name}-{masks}" if masks else cfg.project_name


def create_project(ls: LabelStudio, cfg, samples: list[Path], masks: Optional[str] = None) -> tuple[int, int, str]:
    """Project from the YAML with the sample images (each imported once); returns (id, new tasks, note).
    ``masks`` ("brush" / "polygon"): a mask labeling config, in a project of its own (``sample_title``)."""
    from pipeline.importer.ls_project import LabelStudioTarget
    target = LabelStudioTarget(url=ls.url, api_key=ls.token)
    project_id, note = target.ensure_project(cfg.model_copy(update={"project_name": sample_title(cfg, masks)}), masks)
    have = target.existing(project_id)
    tasks = []
    for path in samples:
        digest = sha256(path)
        if digest not in have:
            tasks.append({"data": {"image": target.upload(project_id, path)},
                          "meta": {"sha256": digest, "source": "label-factory sample", "file": path.name}})
    if tasks:
        target.import_tasks(project_id, tasks)
    return project_id, len(tasks), note


def wait_for_predictions(ls: LabelStudio, project_id: int, timeout: float) -> tuple[int, int]:
    client = ls.client()
    deadline = time.monotonic() + timeout
    while True:
        tasks = list(lsapi.items(client.tasks.list, 200, project=project_id, fields="all"))
        done = sum(1 for t in tasks if (getattr(t, "total_predictions", 0) or 0) > 0)
        if done == len(tasks) or time.monotonic() > deadline:
            return done, len(tasks)
        time.sleep(1)


def finish_project(ls: LabelStudio, project_id: int, version: str, done: int) -> Optional[int]:
    """Once predictions are in: the project's model_version set to the backend's (the Prediction score column
    scores it) and the Data Manager tab listing unlabeled tasks least certain first; the tab's id (None when
    no prediction is stored, so there is nothing to sort)."""
    if not (version and done):
        return None
    client = ls.client()
    try:
        lsapi.use_version(client, project_id, version)
    except lsapi.VersionNotStored as e:
        say(f"warning: {e}: the Prediction score column stays empty")
        return None
    return lsapi.uncertain_tab(client, project_id)


def backend_version(ls: LabelStudio, project_id: int, backend_url: str) -> str:
    """The model_version the backend reported to Label Studio for this project."""
    for b in ls.client().ml.list(project=project_id):
        if (b.url or "").rstrip("/") == backend_url.rstrip("/"):
            return b.model_version or ""
    return ""


class ProjectWatch:
    """The project YAML a person edits while `up` runs: with tiny models its copy for the backend is
    rewritten (a gate threshold edited since the start keeps the person's value from then on, the others
    stay open); either way the backend's next /setup reports the new model_version."""

    def __init__(self, source: Path, tiny_out: Optional[Path], tiny_cache: Optional[Path]):
        self.source, self.tiny_out, self.tiny_cache = source, tiny_out, tiny_cache
        self.mtime = self._mtime()
        self.started = load_project(source, environ={}) if tiny_out is not None else None
        self.edited: set[str] = set()  # gates the person changed: the tiny copy keeps their values
        self.version = model_version(self.backend_config())

    def _mtime(self) -> int:
        try:
            return self.source.stat().st_mtime_ns
        except OSError:
            return -1

    def backend_config(self):
        if self.tiny_out is None:
            return load_project(self.source)
        return load_project(self.tiny_out, environ={})

    def check(self) -> Optional[str]:
        """A line to print when the YAML changed, else None."""
        mtime = self._mtime()
        if mtime == self.mtime:
            return None
        self.mtime = mtime
        note = ""
        try:
            if self.tiny_out is not None:
                current = load_project(self.source, environ={})
                newly = edited_gates(self.started, current) - self.edited
                self.edited |= newly
                tiny_project(current, self.source, self.tiny_cache, self.tiny_out, self.edited)
                if newly:
                    note = (f"\n  tiny models: thresholds {', '.join(sorted(newly))} now as the YAML says "
                            "(the gates not edited stay open)")
            new = model_version(self.backend_config())
        except ConfigError as e:
            return f"{self.source} changed but cannot be used, the backend keeps the last good one:\n{e}"
        old, self.version = self.version, new
        if new == old:
            return f"{self.source} changed; model_version unchanged ({new}){note}"
        return (f"{self.source} changed: model_version {old} -> {new}{note}\n"
                "  select tasks in the Data Manager, then Actions -> Retrieve Predictions to predict them again")


def ready_text(ls: LabelStudio, host: str, project_id: int, done: int, total: int, version: str,
               backend: Service, project_path: Path, source: Optional[Path] = None, tab: Optional[int] = None,
               masks: Optional[str] = None) -> str:
    url = f"http://{public_host(host)}:{ls.url.rsplit(':', 1)[1]}"
    source = source or project_path
    yaml_note = "" if source == project_path else f"   (tiny models: the backend reads {project_path})"
    data = f"{url}/projects/{project_id}/data"
    if masks:
        smart = ("  - turn on Auto-Annotation, pick the click tool and click an object (or the box tool and box it): "
                 "its mask comes back")
    else:
        smart = "  - turn on Auto-Annotation, pick the Auto-Detect rectangle and draw a box: one suggestion comes back"
    return "\n".join([
        "",
        f"label-factory is up: {done}/{total} tasks pre-annotated by the backend",
        f"  Label Studio   {data}"
        + ("   (listening on every interface)" if host in WILDCARD_HOSTS else ""),
        f"  login          {ls.admin.email} / {ls.admin.password}",
        f"  API token      {ls.token}   (legacy token; login and token saved in {ls.data_dir})",
        f"  ML backend     {backend.url}   (log: {backend.log_path})",
        f"  project YAML   {source}{yaml_note}",
        f"  model_version  {version}   (the project's: the Prediction score column shows its scores)",
        *([f"  review tab     {data}?tab={tab}   (unlabeled tasks, most uncertain first)"] if tab is not None else []),
        "",
        "next:",
        f"  - open the URL and a task: its {'masks' if masks else 'boxes'} and scores are the backend's predictions",
        "  - sort by certainty: Order by -> Prediction score"
        + (" (or open the review tab above)" if tab is not None else ""),
        smart,
        f"  - edit {source.name}, then Actions -> Retrieve Predictions: the tasks are predicted again",
        f"  - a whole project as a batch job: label-factory predict --project {project_path} "
        f"--label-studio-url {ls.url} --api-key {ls.token}",
        "Ctrl-C stops everything.",
    ])


def run_up(args) -> int:
    for noisy in ("httpx", "httpcore", "urllib3", "label_studio_sdk"):  # request lines stay out of the console
        logging.getLogger(noisy).setLevel(logging.WARNING)
    host = args.host
    source = Path(args.project).resolve()
    cfg = load_project(source)
    root = Path(args.root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    tiny_out = tiny_cache = None
    project_path = source
    masks = args.masks
    if args.models == "tiny":
        tiny_cache = Path(args.tiny_cache).expanduser()
        tiny_out = root / "projects" / f"{cfg.project_name}-tiny.yaml"
        say("models: tiny random-weight models built on this machine (boxes are meaningless) ...")
        with quiet_model_building():
            project_path = tiny_project(load_project(source, environ={}), source, tiny_cache, tiny_out)
        cfg = load_project(project_path, environ={})
    else:
        check_real_models(cfg, masks)
    from pipeline.cost import announce
    announce(cfg, emit=say)  # the expected seconds per image, before anything starts
    watch = ProjectWatch(source, tiny_out, tiny_cache)
    stop = threading.Event()
    serving = threading.Event()  # start-up done: Ctrl-C ends the loop below; before, it interrupts start-up

    def on_signal(*_):
        if not serving.is_set():
            raise KeyboardInterrupt  # whatever is starting is stopped on its way out
        stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stack = Stack()
    try:
        t0 = time.monotonic()
        say(f"starting Label Studio on {host or '*'} (log: {root / 'label-studio' / 'label-studio.log'}) ...")
        stack.label_studio = ls = start_label_studio(root / "label-studio", port=args.port, host=host)
        say(f"  up in {time.monotonic() - t0:.0f} s at {ls.url}")
        t0 = time.monotonic()
        say(f"starting the ML backend for {cfg.project_name} (log: {root / 'backend.log'}) ...")
        stack.backend = start_backend(root, project_path, ls, args.backend_port, args.timeout, host=host,
                                      tiny=args.models == "tiny")
        say(f"  up in {time.monotonic() - t0:.0f} s at {stack.backend.url}")
        samples = write_samples(root / "samples" / cfg.project_name)
        project_id, new, note = create_project(ls, cfg, samples, masks)
        say(f"{note}: {new} sample image(s) imported")
        from pipeline.importer.ls_project import LabelStudioTarget
        LabelStudioTarget(url=ls.url, api_key=ls.token).connect_backend(project_id, stack.backend.url)
        say("backend connected; waiting for its predictions ...")
        done, total = wait_for_predictions(ls, project_id, args.timeout)
        version = backend_version(ls, project_id, stack.backend.url)
        tab = finish_project(ls, project_id, version, done)
        say(ready_text(ls, host, project_id, done, total, version, stack.backend, project_path, source, tab, masks))
        serving.set()
        if args.exit_when_ready:
            return 0 if done == total else 1
        while not stop.wait(1):
            line = watch.check()
            if line:
                say(line)
            for svc in (stack.backend, ls.service):
                if svc.proc.poll() is not None:
                    print(f"{svc.name} exited ({svc.proc.returncode}); see {svc.log_path}", file=sys.stderr)
                    return 1
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        say("stopping ...")
        stack.stop()
        say("stopped.")
