"""The one-command local stack: Label Studio, the ML backend under gunicorn, a project with samples."""
from __future__ import annotations

import hashlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pipeline.config import apply_env_overrides, load_project
from pipeline.samples import write_samples
from pipeline.stack.labelstudio import LabelStudio, start_label_studio
from pipeline.stack.models import check_real_models, tiny_project
from pipeline.stack.processes import Service, free_port

log = logging.getLogger("label-factory.up")


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


def start_backend(root: Path, project_yaml: Path, ls: LabelStudio, port: Optional[int], timeout: float) -> Service:
    port = free_port(port)
    env = dict(os.environ)
    env.update({"PROJECT_CONFIG": str(project_yaml), "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token,
                "MODEL_DIR": str(root / "model-dir"), "HOST": "127.0.0.1", "PORT": str(port),
                "WORKERS": "1", "THREADS": "4", "LOG_LEVEL": env.get("LOG_LEVEL", "INFO")})
    svc = Service("ML backend", [sys.executable, "-m", "backends._wsgi"], env, root / "backend.log")
    svc.url = f"http://127.0.0.1:{port}"
    svc.wait_http(f"{svc.url}/health", timeout)
    return svc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def create_project(ls: LabelStudio, cfg, samples: list[Path]) -> tuple[int, int]:
    """Project from the YAML with the sample images (each imported once); returns (id, new tasks)."""
    from pipeline.importer.labelstudio import LabelStudioTarget
    target = LabelStudioTarget(url=ls.url, api_key=ls.token)
    project_id, note = target.ensure_project(cfg)
    log.info(note)
    have = target.existing(project_id)
    tasks = []
    for path in samples:
        digest = sha256(path)
        if digest not in have:
            tasks.append({"data": {"image": target.upload(project_id, path)},
                          "meta": {"sha256": digest, "source": "label-factory sample", "file": path.name}})
    if tasks:
        target.import_tasks(project_id, tasks)
    return project_id, len(tasks)


def wait_for_predictions(ls: LabelStudio, project_id: int, timeout: float) -> tuple[int, int]:
    client = ls.client()
    deadline = time.monotonic() + timeout
    while True:
        tasks = list(client.tasks.list(project=project_id, fields="all", page_size=200))
        done = sum(1 for t in tasks if (getattr(t, "total_predictions", 0) or 0) > 0)
        if done == len(tasks) or time.monotonic() > deadline:
            return done, len(tasks)
        time.sleep(1)


def run_up(args) -> int:
    project_path = Path(args.project)
    cfg = load_project(project_path)
    root = Path(args.root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    if args.models == "tiny":
        project_path = tiny_project(cfg, project_path, Path(args.tiny_cache).expanduser(),
                                    root / "projects" / f"{cfg.project_name}-tiny.yaml")
        cfg = load_project(project_path)
        print("models: tiny random-weight models built on this machine (boxes are meaningless)", flush=True)
    else:
        check_real_models(apply_env_overrides(cfg))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack()
    try:
        print("starting Label Studio ...", flush=True)
        stack.label_studio = ls = start_label_studio(root / "label-studio", port=args.port)
        print(f"starting the ML backend ({cfg.project_name}) ...", flush=True)
        stack.backend = start_backend(root, project_path.resolve(), ls, args.backend_port, args.timeout)
        samples = write_samples(root / "samples" / cfg.project_name)
        project_id, new = create_project(ls, cfg, samples)
        from pipeline.importer.labelstudio import LabelStudioTarget
        note = LabelStudioTarget(url=ls.url, api_key=ls.token).connect_backend(project_id, stack.backend.url)
        log.info(note)
        done, total = wait_for_predictions(ls, project_id, args.timeout)
        print(f"\nlabel-factory is up: {done}/{total} tasks pre-annotated by the backend\n"
              f"  Label Studio  {ls.url}/projects/{project_id}/data\n"
              f"  login         {ls.admin.email} / {ls.admin.password}   (saved in {ls.data_dir})\n"
              f"  ML backend    {stack.backend.url}   (log: {stack.backend.log_path})\n"
              f"  project YAML  {project_path}\n"
              "Ctrl-C stops everything.", flush=True)
        if args.exit_when_ready:
            return 0 if done == total else 1
        while not stop.wait(1):
            for svc in (stack.backend, ls.service):
                if svc.proc.poll() is not None:
                    print(f"{svc.name} exited ({svc.proc.returncode}); see {svc.log_path}", file=sys.stderr)
                    return 1
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
