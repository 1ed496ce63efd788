"""/health and /setup latency while /predict is saturated, with and without the per-worker /predict limit.

One gunicorn worker (gthread, THREADS=8, the default) serves a model whose predict holds its thread
for ``--predict-seconds`` (a stand-in for a model call: what matters here is that the thread is
busy). ``--requests`` /predict are sent at once; meanwhile /health is probed 5 times and /setup
once, 0.3 s apart. Side by side in one run:

* unlimited: PREDICT_MAX_REQUESTS=THREADS, every thread may be taken by /predict (the old behaviour);
* default:   PREDICT_MAX_REQUESTS unset -> THREADS - 2; the rest get 503 + Retry-After at once.

    .venv/bin/python benchmarks/health_under_load.py [--requests 64] [--predict-seconds 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from backends.base import LabelStudioMLBase  # noqa: E402

THREADS = 8
SETUP = {"project": "1.1", "schema": '<View><Text name="t" value="$t"/></View>'}


class SleepModel(LabelStudioMLBase):
    """Each predict holds its thread for PREDICT_SECONDS."""

    def predict(self, tasks, context=None, **kwargs):
        time.sleep(float(os.getenv("PREDICT_SECONDS", "2")))
        return [{"result": []} for _ in tasks]


def _timed(fn):
    t0 = time.perf_counter()
    try:
        code = fn().status_code
    except requests.RequestException as e:
        code = type(e).__name__
    return code, time.perf_counter() - t0


def run(limit: str | None, n_requests: int, predict_seconds: float) -> dict:
    from pipeline.stack.processes import Service, free_port
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PORT": str(port), "HOST": "127.0.0.1", "WORKERS": "1",
               "THREADS": str(THREADS), "MODEL_CLASS": "benchmarks.health_under_load:SleepModel",
               "MODEL_DIR": tmp, "PREDICT_SECONDS": str(predict_seconds), "LOG_LEVEL": "WARNING"}
        env.pop("PREDICT_MAX_REQUESTS", None)
        if limit is not None:
            env["PREDICT_MAX_REQUESTS"] = limit
        svc = Service("backend", [sys.executable, "-m", "gunicorn", "-c", "python:backends.gunicorn_conf",
                                  "backends._wsgi:app"], env, Path(tmp) / "log", cwd=REPO)
        try:
            svc.wait_http(f"{url}/health", 60)
            body = {"tasks": [{"id": 1, "data": {}}], "project": "1.1"}
            t0 = time.perf_counter()
            with ThreadPoolExecutor(n_requests) as pool:
                futures = [pool.submit(_timed, lambda: requests.post(f"{url}/predict", json=body, timeout=600))
                           for _ in range(n_requests)]
                # 5 health probes and a /setup, 0.3 s apart while the predictions are in flight (as
                # Label Studio polls), each on its own connection
                with ThreadPoolExecutor(6) as probes:
                    probe_futures = []
                    for i in range(6):
                        time.sleep(0.3)
                        call = (lambda: requests.post(f"{url}/setup", json=SETUP, timeout=120)) if i == 5 else \
                            (lambda: requests.get(f"{url}/health", timeout=120))
                        probe_futures.append(probes.submit(_timed, call))
                    health = [f.result() for f in probe_futures[:5]]
                    setup = probe_futures[5].result()
                predicts = [f.result() for f in futures]
            wall = time.perf_counter() - t0
        finally:
            svc.stop()
    codes = [c for c, _ in predicts]
    return {"health_p50": statistics.median(s for _, s in health), "health_max": max(s for _, s in health),
            "health_ok": sum(c == 200 for c, _ in health), "setup": setup[1], "ok": codes.count(200),
            "busy": codes.count(503), "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--predict-seconds", type=float, default=2.0)
    args = ap.parse_args()
    rows = [("unlimited (all 8 threads)", run(str(THREADS), args.requests, args.predict_seconds)),
            ("default (THREADS - 2 = 6)", run(None, args.requests, args.predict_seconds))]
    print(f"{args.requests} concurrent /predict, each holding a thread {args.predict_seconds:g} s; 1 worker, "
          f"{THREADS} threads")
    print("| /predict limit | /health p50 | /health max | /setup | /predict 200 | /predict 503 | all answered |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['health_p50'] * 1000:.0f} ms | {r['health_max'] * 1000:.0f} ms | "
              f"{r['setup'] * 1000:.0f} ms | {r['ok']} | {r['busy']} | {r['wall']:.1f} s |")
    (_, a), (_, b) = rows
    print(f"/health p50 ratio unlimited/default: {a['health_p50'] / b['health_p50']:.0f}x")


if __name__ == "__main__":
    main()
