"""Retrying clients against one backend worker: latency until a /predict is answered, and ordinary
/predict while six image URLs drip, before and after admission by model slots, side by side.

One gunicorn worker with each code's default settings (THREADS, PREDICT_CONCURRENCY = 4) serves
the real ``AutoLabelModel``: each task's 1920×1080 JPEG is downloaded from a local stand-in for
Label Studio and decoded, then a filter-only cascade asks a stand-in VLM that answers after
``--model-seconds`` (a model server's call: what matters is how long it holds a model slot).

* ``clients N``: N clients each send /predict (one task) one after another, and on a 503 wait
  the Retry-After it names and send again; the latency of a request runs from its first attempt
  to its answer. p50 / p99 / max over all requests, 503s per request, /health probed every 0.25 s.
* ``drip``: six /predict whose image takes 20 s to arrive, then 10 ordinary one-task /predict,
  one after another, without retries: how many are answered, and in how long.

    .venv/bin/python benchmarks/predict_admission.py --before DIR [--clients 4,16,64] [--model-seconds 0.5]

``--before DIR``: a checkout's ``backends`` and ``pipeline`` to compare with, e.g.
``git archive <commit> backends pipeline | tar -x -C DIR``; without it only this checkout runs."""
from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = {"project_name": "bench", "target_object": "stop sign", "label": "Stop Sign",
           "falcon_queries": {"Stop Sign": ["stop sign"]}, "stages": {"filter": True, "ground": False, "verify": False}}
PHOTO = "/data/upload/1/photo.jpg"
DRIPPING = "/data/upload/1/dripping.jpg"


def __getattr__(name):  # MODEL_CLASS=benchmarks.predict_admission:BenchModel, in the server only
    if name != "BenchModel":
        raise AttributeError(name)
    from backends.autolabel.model import AutoLabelModel
    from pipeline.cascade import Pipeline
    from pipeline.predict import runner
    from tests.doubles.providers import KnownGrounder, KnownVLM
    vlm = KnownVLM(0.9, delay=float(os.environ["BENCH_MODEL_SECONDS"]))
    runner.PIPELINE_FACTORY = lambda cfg: Pipeline(cfg, vlm=vlm, grounder=KnownGrounder({}))
    return AutoLabelModel


def photo_jpeg() -> bytes:
    """A 1920×1080 photo-like JPEG: smooth shading with sensor-like noise (about 1 MB)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1080, 0:1920]
    base = np.stack([x / 1920 * 200, y / 1080 * 180, (x + y) / 3000 * 150], axis=-1)
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


class Server:
    def __init__(self, code: Path, tmp: Path, files_url: str, model_seconds: float, settings: dict):
        import yaml

        from pipeline.config import parse_project
        from pipeline.labelstudio.labeling_config import labeling_config
        from pipeline.stack.processes import Service, free_port
        self.label_config = labeling_config(parse_project(PROJECT))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        (tmp / "bench.yaml").write_text(yaml.safe_dump(PROJECT))
        path = str(REPO) if code == REPO else f"{code}{os.pathsep}{REPO}"  # the compared code first
        env = {k: v for k, v in os.environ.items() if k not in ("THREADS", "PREDICT_CONCURRENCY", "PREDICT_SLOT_WAIT",
                                                                 "PREDICT_MAX_REQUESTS", "PREDICT_DEADLINE")}
        env.update(PYTHONPATH=path, PORT=str(port), HOST="127.0.0.1", WORKERS="1", LOG_LEVEL="WARNING",
                   MODEL_CLASS="benchmarks.predict_admission:BenchModel", MODEL_DIR=str(tmp / "models"),
                   PROJECT_CONFIG=str(tmp / "bench.yaml"), LABEL_STUDIO_URL=files_url,
                   LABEL_STUDIO_API_KEY="0123456789abcdef0123456789abcdef01234567", LF_ANSWER_CACHE="0",
                   BENCH_MODEL_SECONDS=str(model_seconds), PRELOAD_MODELS="1", **settings)
        # cwd: ``python -m`` puts it first on sys.path, so it decides which backends/ is imported
        self.svc = Service("backend", [sys.executable, "-m", "gunicorn", "-c", "python:backends.gunicorn_conf",
                                       "backends._wsgi:app"], env, tmp / "backend.log", cwd=code)
        self.svc.wait_http(f"{self.url}/health", 120, ok=lambda r: r.ok and r.json().get("status") == "UP")

    def predict(self, image: str, timeout: float = 300):
        import requests
        r = requests.post(f"{self.url}/predict", timeout=timeout, json={
            "tasks": [{"id": 1, "data": {"image": image}}], "label_config": self.label_config})
        if r.status_code not in (200, 503) or r.status_code == 200 and r.json().get("errors"):
            raise RuntimeError(f"/predict answered {r.status_code}: {r.text[:300]}")
        return r

    def stop(self):
        self.svc.stop()


def _probe(url: str, every: float, stop, out) -> None:
    import requests
    seconds = []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            requests.get(f"{url}/health", timeout=30)
        finally:
            seconds.append(time.perf_counter() - t0)
        stop.wait(every)
    out.send(seconds)


class HealthProbe:
    """/health every ``every`` seconds from a process of its own (the clients' threads do not delay it)."""

    def __init__(self, url: str, every: float = 0.25):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._out, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_probe, args=(url, every, self._stop, child_end), daemon=True)
        self._proc.start()

    def stop(self) -> list[float]:
        self._stop.set()
        seconds = self._out.recv()
        self._proc.join()
        return seconds


def clients(server: Server, n_clients: int, total: int) -> dict:
    per_client = max(1, math.ceil(total / n_clients))
    latencies, refusals, codes = [], [], []
    lock = threading.Lock()

    def one_client(_):
        for _ in range(per_client):
            t0, busy = time.perf_counter(), 0
            while True:
                r = server.predict(PHOTO)
                if r.status_code != 503:
                    break
                busy += 1
                time.sleep(float(r.headers.get("Retry-After", "5")))
            with lock:
                latencies.append(time.perf_counter() - t0)
                refusals.append(busy)
                codes.append(r.status_code)

    probe = HealthProbe(server.url)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        list(pool.map(one_client, range(n_clients)))
    wall = time.perf_counter() - t0
    health = probe.stop()
    return {"requests": len(latencies), "p50": _pct(latencies, 50), "p99": _pct(latencies, 99),
            "max": max(latencies), "busy_per_request": statistics.mean(refusals),
            "not_200": sum(c != 200 for c in codes), "per_second": len(latencies) / wall,
            "health_p50": _pct(health, 50), "health_p99": _pct(health, 99), "health_max": max(health)}


def drip(server: Server, files, n_dripping: int = 6, n_ordinary: int = 10) -> dict:
    before = len(files.hits(DRIPPING))
    with ThreadPoolExecutor(n_dripping) as pool:
        slow = [pool.submit(server.predict, DRIPPING) for _ in range(n_dripping)]
        end = time.monotonic() + 30
        while len(files.hits(DRIPPING)) - before < n_dripping and time.monotonic() < end:
            time.sleep(0.05)
        answered, seconds = 0, []
        for _ in range(n_ordinary):
            t0 = time.perf_counter()
            r = server.predict(PHOTO)
            seconds.append(time.perf_counter() - t0)
            answered += r.status_code == 200
        slow_codes = [f.result().status_code for f in slow]
    return {"answered": answered, "asked": n_ordinary, "p50": _pct(seconds, 50), "max": max(seconds),
            "dripping_200": slow_codes.count(200)}


def run(code: Path, args, files) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(code, Path(tmp), files.url, args.model_seconds, args.set if code == REPO else {})
        try:
            out = {}
            for n in args.clients:
                out[n] = clients(server, n, args.total)
                print(f"  {code.name or code}: {n} clients done: {out[n]}", file=sys.stderr, flush=True)
            out["drip"] = drip(server, files)
        finally:
            server.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, help="a checkout's backends/ and pipeline/ to compare with")
    ap.add_argument("--clients", default="4,16,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--total", type=int, default=240, help="requests per concurrency level (spread over the clients)")
    ap.add_argument("--model-seconds", type=float, default=0.5)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting of this checkout's server (e.g. THREADS=66), instead of its default")
    args = ap.parse_args()
    args.set = dict(kv.split("=", 1) for kv in args.set)
    sys.path.insert(0, str(REPO))
    from tests.doubles.servers import FileServer, held
    files = FileServer()
    files.files[PHOTO] = photo_jpeg()
    files.files[DRIPPING] = held(files.files[PHOTO], lambda: time.sleep(20))
    codes = ([("before", args.before.resolve())] if args.before else []) + [("after", REPO)]
    try:
        results = {name: run(code, args, files) for name, code in codes}
    finally:
        files.close()
    print(f"one worker, each code's default THREADS and PREDICT_CONCURRENCY{' (after: ' if args.set else ''}"
          f"{', '.join(f'{k}={v}' for k, v in args.set.items())}{')' if args.set else ''}; {args.total} one-task "
          f"/predict per row, model call {args.model_seconds:g} s, 1920x1080 JPEG downloaded and decoded per task")
    print("| code | clients | p50 | p99 | max | 503s per request | requests/s | /health p50 / p99 / max |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.clients:
        for name, _ in codes:
            r = results[name][n]
            print(f"| {name} | {n} | {r['p50']:.2f} s | {r['p99']:.2f} s | {r['max']:.2f} s | "
                  f"{r['busy_per_request']:.2f} | {r['per_second']:.1f} | {r['health_p50'] * 1000:.0f} / "
                  f"{r['health_p99'] * 1000:.0f} / {r['health_max'] * 1000:.0f} ms |")
    if args.before:
        for n in args.clients:
            b, a = results["before"][n], results["after"][n]
            print(f"{n} clients: p99 before/after {b['p99'] / a['p99']:.1f}x, p50 before/after "
                  f"{b['p50'] / a['p50']:.1f}x")
    print("\n| code | ordinary /predict answered while 6 image URLs drip (20 s) | their p50 | max | "
          "dripping ones answered |")
    print("|---|---|---|---|---|")
    for name, _ in codes:
        d = results[name]["drip"]
        print(f"| {name} | {d['answered']} / {d['asked']} | {d['p50']:.2f} s | {d['max']:.2f} s | "
              f"{d['dripping_200']} / 6 |")


if __name__ == "__main__":
    main()
