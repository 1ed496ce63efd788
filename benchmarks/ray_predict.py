"""`label-factory predict --ray` vs the single-process job, and Label Studio's prediction write rate, in one run.

Part 1, throughput (tasks/s) on the same tasks, each side on its own Label Studio project with the
same uploaded images (so --only-missing skips nothing), OWLv2 with google/owlv2-base-patch16-ensemble's
published shape (random weights, 960x960 input), ground stage only, ONE torch thread per worker:

* single process: ``batch.run`` (today's ``label-factory predict``), concurrency 1, torch 1 thread;
* Ray, 1 actor and 2 actors (1 CPU each, torch 1 thread, 1 task per call), ``ray_job.run``.

Timing starts when the models are loaded (single process) or every actor is ready (Ray, `wait_for_all`) and ends
when the last prediction is stored; model loading and Ray's start-up are reported beside it.

Part 2, writes: predictions/s Label Studio takes, on projects of two sizes, for Label Studio as it ships
and with its memory-efficient import flag (``fflag_fix_back_4620_..._short=true``), whose import updates
the counters of the written tasks only instead of every task of the project:

* one ``predictions.create`` per task (how ``predict`` wrote before both jobs shared the writer);
* the jobs' writer alone (pipeline/predict/writer.py: bulk ``POST /api/projects/{id}/import/predictions``,
  100 a request, one request at a time, no rate cap);
* the single-process job end to end (``batch.run``: list the tasks, predict them with a grounder that
  answers at once, write through the same writer, no rate cap): the job's own cost around the writes.

    .venv/bin/python benchmarks/ray_predict.py               # OWLv2-base shape, ~15 min on 2 cores
    .venv/bin/python benchmarks/ray_predict.py --quick       # tiny OWLv2, small projects (sanity only)

Goals from issue 13: 2 actors >= 1.8x one actor; Ray's overhead vs the single process <= 10 % at one actor.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from benchmarks._common import log, machine, now, print_config, table  # noqa: E402
from benchmarks.predict_overhead import owlv2_dir, project_yaml  # noqa: E402
from pipeline.detections import Detections  # noqa: E402
from pipeline.providers.base import Grounder  # noqa: E402

FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def new_project(ls, title: str, label_config: str, images: list[Path], copies: int) -> int:
    """A project whose tasks are ``images`` uploaded ``copies`` times (one multipart request)."""
    client = ls.client()
    project = client.projects.create(title=title, label_config=label_config)
    files = [(f"f{c}-{p.name}", (f"c{c}-{p.name}", p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg"))
             for c in range(copies) for p in images]
    r = requests.post(f"{ls.url}/api/projects/{project.id}/import", files=files, headers=ls.headers(), timeout=300)
    r.raise_for_status()
    return project.id


# -- part 1 -----------------------------------------------------------------------------------
def predict_sides(ls, proj: Path, images: list[Path], copies: int) -> list[dict]:
    import torch

    from pipeline.labelstudio.labeling_config import labeling_config
    from pipeline.predict import job as batch
    from pipeline.predict import ray_job, runner
    from pipeline.predict.writer import WriteOptions

    torch.set_num_threads(1)
    cfg, pipeline = runner.load(proj)
    config = labeling_config(cfg)
    client = ls.client()
    rows = []

    t0 = now()
    pipeline.load()
    load_s = now() - t0
    pid = new_project(ls, "bench-single", config, images, copies)
    log(f"single process: {len(images) * copies} tasks (load avg {load_average()})")

    fetch = runner.fetcher(cfg, ls.url, ls.token)
    s = batch.run(client, cfg, pipeline, pid, batch_size=50, progress=False, fetch=fetch, concurrency=1)
    rows.append({"side": "single process (`predict`)", "s": s, "start": load_s, "load": load_average()})

    ray_job.connect(None)  # one local Ray for both Ray sides (its start-up is not timed)
    import ray
    try:
        for n in (1, 2):
            pid = new_project(ls, f"bench-ray-{n}", config, images, copies)
            log(f"Ray, {n} actor(s) (load avg {load_average()})")
            opts = ray_job.RayOptions(actors=n, cpus_per_actor=1, tasks_per_call=1, wait_for_all=True)
            s, rep = ray_job.run(client, cfg, pid, project_path=str(proj), label_studio_url=ls.url, api_key=ls.token,
                                 options=opts, progress=False, concurrency=1, write=WriteOptions(flush_seconds=1.0))
            rows.append({"side": f"Ray, {n} actor{'s' if n > 1 else ''} (`predict --ray`)", "s": s,
                         "start": rep.start_seconds, "load": load_average()})
    finally:
        ray.shutdown()
    for r in rows:
        s = r["s"]
        assert not s.failed and s.predicted == len(images) * copies, (r["side"], s.failed)
    return rows


# -- part 2 -----------------------------------------------------------------------------------
def fake_outcome(task_id: int, version: str):
    from pipeline.predict.runner import TaskOutcome
    result = [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 800,
               "original_height": 600, "image_rotation": 0, "score": 0.5,
               "value": {"x": 10 + 5 * j, "y": 10, "width": 20, "height": 20, "rotation": 0,
                         "rectanglelabels": ["Stop Sign"]}} for j in range(4)]
    return TaskOutcome(task_id, {"result": result, "model_version": version, "score": 0.5})


class InstantGrounder(Grounder):
    """A grounder that answers at once: one box per image (the job's cost without a model's)."""
    name = "instant"

    def boxes(self, image, queries):
        return Detections(xyxy=[[10, 10, 60, 50]], scores=[0.5], labels=[queries[0]], queries=[queries[0]])


def write_rates(ls, proj: Path, sizes: list[int], n_bulk: int, n_single: int) -> list[dict]:
    from PIL import Image

    from pipeline.cascade import Pipeline
    from pipeline.config import load_project
    from pipeline.labelstudio.labeling_config import labeling_config
    from pipeline.predict import job as batch
    from pipeline.predict.writer import PredictionWriter, WriteOptions

    cfg = load_project(proj)
    label_config = labeling_config(cfg)
    pipeline = Pipeline(cfg, grounder=InstantGrounder())
    image = Image.new("RGB", (800, 600), (120, 90, 60))
    write = WriteOptions(batch=100, rate=0, flush_seconds=1.0)
    client = ls.client()
    rows = []
    for size in sizes:
        project = client.projects.create(title=f"writes-{size}", label_config=label_config)
        for start in range(0, size, 5000):
            rows_json = [{"image": f"/data/upload/1/{i}.jpg"} for i in range(start, min(size, start + 5000))]
            r = requests.post(f"{ls.url}/api/projects/{project.id}/import", headers=ls.headers(), timeout=900,
                              json=rows_json)
            r.raise_for_status()
        r = requests.get(f"{ls.url}/api/tasks", params={"project": project.id, "page_size": size, "fields": "all"},
                         headers=ls.headers(), timeout=900)
        r.raise_for_status()
        ids = [t["id"] for t in r.json()["tasks"]]
        assert len(ids) == size, len(ids)

        t0 = now()  # one create per task, as the single-process job writes
        for tid in ids[:n_single]:
            o = fake_outcome(tid, "bench")
            client.predictions.create(task=tid, result=o.prediction["result"], score=0.5, model_version="bench")
        single = n_single / (now() - t0)

        s = batch.Summary(project.id, "bench")
        w = PredictionWriter(client, project.id, "bench", s, lambda p: len(p["result"]), options=write)
        t0 = now()
        for tid in ids[n_single:n_single + n_bulk]:
            w.put(fake_outcome(tid, "bench"))
        w.close()
        bulk = s.predicted / (now() - t0)
        assert s.predicted == n_bulk and not s.failed, s.failed

        # the single-process job on the same project: its first n_bulk tasks (listed, "predicted", written)
        job = batch.run(client, cfg, pipeline, project.id, limit=n_bulk, batch_size=100, progress=False,
                        fetch=lambda url, task_id: image, concurrency=1, write=write)
        assert job.predicted == n_bulk and not job.failed, job.failed
        rows.append({"size": size, "single": single, "bulk": bulk, "requests": w.requests,
                     "s_per_request": w.write_seconds / max(1, w.requests), "job": job.predicted / job.seconds,
                     "job_requests": job.write_requests, "load": load_average()})
        log(f"{size} tasks: single {single:.1f}/s, bulk {bulk:.1f}/s, single-process job {rows[-1]['job']:.1f}/s "
            f"(load avg {load_average()})")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny OWLv2 and small projects (sanity only)")
    ap.add_argument("--copies", type=int, default=2, help="copies of the 5 sample images per project (default 2)")
    ap.add_argument("--skip-predict", action="store_true", help="only the write rates")
    ap.add_argument("--skip-flag", action="store_true", help="only Label Studio as it ships")
    ap.add_argument("--skip-writes", action="store_true", help="only the throughput part")
    a = ap.parse_args(argv)
    shape = "tiny" if a.quick else "base"
    sizes, n_bulk, n_single = ([300], 200, 20) if a.quick else ([2000, 20000], 1000, 100)

    from pipeline.samples import write_samples
    from pipeline.stack.ls_server import start_label_studio

    t_start = now()
    tmp = Path(tempfile.mkdtemp(prefix="lf-bench-ray-"))
    images = write_samples(tmp / "images")
    proj = project_yaml(owlv2_dir(shape), tmp / "bench.yaml")

    predict_rows, write_rows = [], {}
    variants = [("as shipped", {})] + ([] if a.skip_flag or a.skip_writes else
                                       [("memory-efficient import flag", {FLAG: "true"})])
    for i, (name, env) in enumerate(variants):
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # Label Studio's environment comes from ours
        try:
            ls = start_label_studio(tmp / f"ls-{i}")
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        try:
            if i == 0 and not a.skip_predict:
                predict_rows = predict_sides(ls, proj, images, a.copies)
            if not a.skip_writes:
                write_rows[name] = write_rates(ls, proj, sizes, n_bulk, n_single)
        finally:
            ls.stop()

    print_config("ray_predict: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "model": f"OWLv2 {shape} shape ({'google/owlv2-base-patch16-ensemble, 960x960' if shape == 'base' else 'test'})"
                 ", random weights; ground stage only, 1 query; torch 1 thread per worker; concurrency 1",
        "tasks": f"{len(images) * a.copies} per side: the 5 sample images (pipeline/samples.py, 480-800 px) "
                 f"x {a.copies}, uploaded to Label Studio, fetched through its API",
        "Label Studio": "1.23.2, SQLite, on this machine (loopback)",
        **machine(), "load average at the end": load_average(),
    })
    if predict_rows:
        base = predict_rows[0]["s"]
        one = predict_rows[1]["s"]
        rate = lambda s: s.predicted / s.seconds  # noqa: E731
        print(table(["side", "tasks", "s/task", "tasks/s", "vs single process", "vs 1 actor", "model load s",
                     "load avg (1/5/15 min) after"], [
            [r["side"], r["s"].predicted, f"{r['s'].seconds / r['s'].predicted:.2f}", f"{rate(r['s']):.3f}",
             f"{rate(r['s']) / rate(base):.2f}x", "-" if i == 0 else f"{rate(r['s']) / rate(one):.2f}x",
             f"{r['start']:.1f}", r["load"]] for i, r in enumerate(predict_rows)]))
        two = predict_rows[2]["s"]
        over = (one.seconds / base.seconds - 1) * 100
        scale = rate(two) / rate(one)
        print(f"\nRay overhead at 1 actor: {over:+.1f} % (goal <= 10 %: {'met' if over <= 10 else 'NOT met'}); "
              f"2 actors vs 1: {scale:.2f}x (goal >= 1.8x: {'met' if scale >= 1.8 else 'NOT met'})")
    for name, rows in write_rows.items():
        print(f"\nLabel Studio prediction writes ({name}; {n_single} single creates, then {n_bulk} through the "
              f"writer, then {n_bulk} by the single-process job through it: 100 per bulk request, one request at a "
              "time, no rate cap)")
        print(table(["project tasks", "single create pred/s", "writer pred/s", "writer vs single",
                     "s per bulk request", "predict (single process) pred/s", "job vs single", "load avg after"], [
            [f"{r['size']:,}", f"{r['single']:.1f}", f"{r['bulk']:.1f}", f"{r['bulk'] / r['single']:.0f}x",
             f"{r['s_per_request']:.2f}", f"{r['job']:.1f} ({r['job_requests']} requests)",
             f"{r['job'] / r['single']:.0f}x", r["load"]] for r in rows]))
    print(f"\nwall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
