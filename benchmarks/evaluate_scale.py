"""`label-factory evaluate` on a 50,000-task Label Studio project, and its listing beside the SDK's typed pager.

A real Label Studio 1.23 (from .venv-ls, SQLite, started by the same code as `label-factory up`) gets a
project filled through its import API: every task with one annotation (0-3 boxes, lead_time) and one
prediction (model_version ``bench-A``: boxes kept, moved, relabeled or missed, false positives, scores),
imported inline in batches. Then, in alternating order over ``--rounds`` rounds:

* the whole command as a subprocess (``evaluate --suspects``): its one listing is GET /api/tasks pages
  (fields=all cut by include + expand, annotated-only filter) as plain JSON dicts, through
  ``lsapi.items`` over ``lsapi.task_json``;
* the listing alone, in this process, two ways: those JSON pages, and the same pages through the SDK's
  typed pager (``lsapi.items`` over ``client.tasks.list``, objects dumped to dicts): the route evaluate
  does not take, and why.

    .venv/bin/python benchmarks/evaluate_scale.py                   # 50,000 tasks (import ~minutes)
    .venv/bin/python benchmarks/evaluate_scale.py --tasks 2000      # quick look

The boxes are synthetic (constructed, not from a model): only the timings mean anything here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from benchmarks._common import ROOT, fmt_s, log, median, print_config, table  # noqa: E402

LABELS = ["Stop Sign", "Other"]
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          + "".join(f'<Label value="{lab}"/>' for lab in LABELS) + "</RectangleLabels></View>")
WIDTH, HEIGHT = 1280, 960  # a real photo size; regions are in percent of it
LISTINGS = ("json pages (evaluate's)", "typed pager")


def _region(rid: str, box, label: str, score=None) -> dict:
    x, y, w, h = (float(v) for v in box)
    r = {"id": rid, "from_name": "label", "to_name": "image", "type": "rectanglelabels",
         "original_width": WIDTH, "original_height": HEIGHT, "image_rotation": 0,
         "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}
    if score is not None:
        r["score"] = round(float(score), 4)
    return r


def synthetic_task(i: int, rng: np.random.Generator) -> dict:
    """One task with an annotation and a bench-A prediction that kept, moved, relabeled or missed its boxes."""
    truth, pred = [], []
    for k in range(int(rng.choice([0, 1, 1, 2, 3]))):
        box = np.array([rng.uniform(0, 70), rng.uniform(0, 70), rng.uniform(5, 30), rng.uniform(5, 30)])
        label = LABELS[int(rng.random() < 0.2)]
        truth.append(_region(f"t{i}-{k}", box, label))
        fate = rng.choice(["kept", "moved", "relabeled", "missed"], p=[0.6, 0.2, 0.05, 0.15])
        if fate == "missed":
            continue
        jitter = 0.01 if fate == "kept" else 0.12
        moved = box + np.r_[box[2:] * rng.uniform(-jitter, jitter, 2), box[2:] * rng.uniform(-jitter, jitter, 2)]
        plabel = LABELS[1 - LABELS.index(label)] if fate == "relabeled" else label
        pred.append(_region(f"p{i}-{k}", moved, plabel, rng.beta(8, 2) if fate == "kept" else rng.beta(4, 3)))
    for k in range(int(rng.random() < 0.3)):  # a false positive the annotator deletes
        box = [rng.uniform(0, 70), rng.uniform(0, 70), rng.uniform(5, 20), rng.uniform(5, 20)]
        pred.append(_region(f"f{i}-{k}", box, LABELS[0], rng.beta(2, 4)))
    scores = [r["score"] for r in pred]
    return {"data": {"image": f"/data/upload/1/bench-{i}.jpg"},
            "annotations": [{"result": truth, "lead_time": round(float(rng.lognormal(3.0, 0.5)), 2)}],
            "predictions": [{"result": pred, "model_version": "bench-A",
                             "score": round(float(np.mean(scores)), 4) if scores else None}]}


def fill_project(url: str, token: str, n: int, batch: int, seed: int) -> tuple[int, float]:
    headers = {"Authorization": f"Token {token}"}
    r = requests.post(f"{url}/api/projects", json={"title": f"evaluate-scale-{n}", "label_config": CONFIG},
                      headers=headers, timeout=60)
    r.raise_for_status()
    pid = r.json()["id"]
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        tasks = [synthetic_task(i, rng) for i in range(start, min(n, start + batch))]
        r = requests.post(f"{url}/api/projects/{pid}/import", json=tasks, headers=headers, timeout=600)
        if r.status_code != 201:
            raise RuntimeError(f"import failed: HTTP {r.status_code}: {r.text[:300]}")
        if (start // batch) % 10 == 0:
            log(f"imported {start + len(tasks):,}/{n:,} tasks ({time.perf_counter() - t0:.0f} s)")
    return pid, time.perf_counter() - t0


def run_evaluate(url: str, token: str, pid: int, out: Path, page_size: int) -> dict:
    """The whole command in a subprocess: wall seconds, its own timings and its peak RSS."""
    cmd = [sys.executable, "-m", "pipeline.cli", "--log-level", "WARNING", "evaluate", "--ls-project", str(pid),
           "--label-studio-url", url, "--api-key", token, "--page-size", str(page_size),
           "--out", str(out), "--quiet", "--suspects"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"evaluate failed:\n{err[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {"wall": wall, "rss_mib": usage.ru_maxrss / 1024, "listed": report["tasks"]["listed"], **report["timing"]}


def listing_seconds(url: str, token: str, pid: int, listing: str, page_size: int) -> tuple[float, int]:
    """The reviewed tasks listed as evaluate lists them, as JSON pages or through the SDK's typed pager."""
    from pipeline.evaluate.listing import ANNOTATED, INCLUDE
    from pipeline.labelstudio import client as credentials
    from pipeline.labelstudio import lsapi

    client = credentials.client(url, token, timeout=600)
    params = {"project": pid, "fields": "all", "include": INCLUDE, "query": ANNOTATED, "resolve_uri": False}
    t0 = time.perf_counter()
    if listing == LISTINGS[0]:
        n = sum(1 for _ in lsapi.items(lsapi.task_json(client), page_size, expand="annotations", **params))
    else:
        typed = lsapi.items(client.tasks.list, page_size, **params,
                            request_options={"additional_query_parameters": {"expand": "annotations"}})
        n = sum(1 for t in typed if t.model_dump(include={"id", "annotations", "predictions"}, mode="json"))
    return time.perf_counter() - t0, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000, help="tasks per import request")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each (alternating order)")
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label-studio-url", help="use this Label Studio instead of starting one")
    ap.add_argument("--api-key", help="its legacy token or personal access token")
    ap.add_argument("--ls-project", type=int, help="an already filled project (skips the import)")
    args = ap.parse_args()

    from pipeline.stack.ls_server import start_label_studio

    work = Path(tempfile.mkdtemp(prefix="evaluate-scale-"))
    server = None
    if args.label_studio_url:
        url, token = args.label_studio_url.rstrip("/"), args.api_key
    else:
        log("starting Label Studio (.venv-ls, SQLite)")
        server = start_label_studio(work / "label-studio")
        url, token = server.url, server.token
    try:
        if args.ls_project:
            pid, import_s = args.ls_project, float("nan")
        else:
            pid, import_s = fill_project(url, token, args.tasks, args.batch, args.seed)
            log(f"project {pid}: {args.tasks:,} tasks imported in {import_s:.0f} s")
        runs, lists = [], {m: [] for m in LISTINGS}
        for i in range(args.rounds):
            runs.append(run_evaluate(url, token, pid, work / f"evaluate-{i}", args.page_size))
            log(f"evaluate: {runs[-1]['wall']:.1f} s wall ({runs[-1]['seconds_listing']:.1f} s listing + parsing), "
                f"{runs[-1]['rss_mib']:.0f} MiB peak")
            for listing in (LISTINGS if i % 2 == 0 else LISTINGS[::-1]):
                seconds, n = listing_seconds(url, token, pid, listing, args.page_size)
                lists[listing].append(seconds)
                log(f"{listing}: {n:,} tasks listed in {seconds:.1f} s")
        n = runs[0]["listed"]
        wall = median(r["wall"] for r in runs)
        base = median(lists[LISTINGS[0]])
        print_config("evaluate on a filled Label Studio project", {
            "tasks": f"{n:,} (each: 1 annotation with 0-3 boxes, 1 prediction bench-A)",
            "import": f"{import_s:.0f} s in batches of {args.batch} (inline annotations + predictions)",
            "command": "label-factory evaluate --ls-project P --suspects --quiet (subprocess, report.json + "
                       "report.html written)",
            "page size": args.page_size, "rounds": args.rounds, "Label Studio": url})
        print()
        print(table(["", "runs", "median s", "tasks/s", "listing + parse s", "rest s (start-up, metrics, reports)",
                     "peak RSS MiB"],
                    [["evaluate (whole command)", len(runs), fmt_s(wall), f"{n / wall:,.0f}",
                      fmt_s(median(r["seconds_listing"] for r in runs)),
                      fmt_s(median(r["wall"] - r["seconds_listing"] for r in runs)),
                      f"{median(r['rss_mib'] for r in runs):,.0f}"]]))
        print()
        print(table(["listing alone", "runs", "median s", "tasks/s", "vs json pages"],
                    [[m, len(lists[m]), fmt_s(median(lists[m])), f"{n / median(lists[m]):,.0f}",
                      f"{median(lists[m]) / base:.2f}x"] for m in LISTINGS]))
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
