"""Seconds per stage, total and peak RSS for one photo through a project's default cascade, per dtype, beside
what ``pipeline/cost.py`` estimated for it: the check that the start-up estimate can be trusted.

Projects: ``projects/stop-signs.yaml`` (filter -> OWLv2 -> verify) and ``projects/drones.yaml`` (filter ->
Falcon Perception, 4 queries -> verify), each on a 1920x1080 and a 4032x3024 photo-like JPEG, decoded and
budgeted as ``label-factory predict`` does (``Pipeline.open`` + ``Pipeline.run``).

What differs from the shipped YAMLs, on purpose, and is printed with the figures:

* the VLM: both projects ask a server (``kind: openai``); here it runs in-process through the
  ``transformers`` provider with Qwen2.5-VL-3B-Instruct's PUBLISHED shape (benchmarks/_qwen.py: built once,
  random weights, bf16 safetensors under ~/.cache/label-factory-bench), so its seconds and memory are this
  machine's. drones ships the 7B; the 3B is what this benchmark measures for both;
* the grounders: OWLv2 with google/owlv2-base-patch16-ensemble's published shape, Falcon-Perception (0.6B)'s
  published shape, random weights, through the production loaders;
* every gate open (thresholds 0) and, after the grounder has run on the photo (its seconds are real), the
  grounder's boxes are replaced by ``cost.BOXES`` fixed boxes large enough that each verify crop is
  ``budgets.verify_pixels`` (256 Qwen image tokens): random weights give boxes of arbitrary number and size
  (random Falcon none at all), and verify's cost is set by how many crops of what size it sees. The estimate
  prices exactly this: a photo that passes the filter with ``cost.BOXES`` boxes;
* Falcon's generation stops after ``cost.FALCON_DECODE_STEPS`` decode steps per query (random weights never
  emit the end token): the model's logits are steered to emit <coord> <size> pairs and then the end token,
  as a real model does for a few objects; the box heads and every forward pass are the model's own;
* ``--masks``: SAM (facebook/sam-vit-base's shape) masks the kept boxes (not in the default cascades, and not
  in the estimate).

Each configuration (project x dtype) runs in a fresh child process, so its peak RSS is its own; rounds
interleave the configurations (their order alternates between rounds) and tables give medians. Each child
loads the models, runs one small warm-up photo, then each photo size once, and computes the estimate
(``cost.estimate``: its own matmul probe, under the same load) for the same photo.

    .venv/bin/python benchmarks/photo_cost.py                                  # both projects, fp32 and auto
    .venv/bin/python benchmarks/photo_cost.py --dtypes fp32,auto,bf16          # + explicit bf16 (why auto is fp32)
    .venv/bin/python benchmarks/photo_cost.py --projects stop-signs --sizes 1920x1080 --dtypes bf16
    .venv/bin/python benchmarks/photo_cost.py --device cuda                    # a GPU machine
    .venv/bin/python benchmarks/photo_cost.py --quick                          # tiny models, seconds (smoke)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._common import CACHE, ROOT, fmt_s, log, median, now, peak_rss_mib, table  # noqa: E402

PROJECTS = {"stop-signs": ROOT / "projects" / "stop-signs.yaml", "drones": ROOT / "projects" / "drones.yaml"}
SIZES = [(1920, 1080), (4032, 3024)]
WARMUP = (336, 252)
QWEN_MAX_PIXELS = 12_845_056  # Qwen/Qwen2.5-VL-*'s preprocessor_config.json
MARK = "PHOTO_COST_RESULT "


# -- what each child runs ---------------------------------------------------------------------------------
def model_paths(quick: bool) -> dict:
    """Model dirs (built once under the bench cache): the VLM, OWLv2, Falcon, SAM."""
    from benchmarks import _qwen
    from benchmarks.masks import sam_dir
    from benchmarks.predict_overhead import owlv2_dir
    out = {"vlm": _qwen.ensure("tiny" if quick else "3b", QWEN_MAX_PIXELS),
           "owlv2": owlv2_dir("tiny" if quick else "base"), "sam": sam_dir("tiny" if quick else "base")}
    if quick:
        from pipeline.tiny.falcon import build
        out["falcon"] = CACHE / "falcon-tiny"
        if not (out["falcon"] / "model.safetensors").exists():
            build(out["falcon"])
    else:
        from benchmarks.falcon_cpu import export_dir
        out["falcon"] = export_dir("0.6b")
    return {k: str(v) for k, v in out.items()}


def bench_config(project: str, dtype: str, device: str, paths: dict, masks: bool = False):
    """The project's YAML with the benchmark's models (module docstring), every provider in ``dtype``."""
    import yaml

    from pipeline.config import parse_project
    from pipeline.cost import BOXES, FALCON_DECODE_STEPS
    data = yaml.safe_load(PROJECTS[project].read_text())
    prov = data["providers"]
    prov["vlm"] = {"kind": "transformers", "model": paths["vlm"], "device": device, "dtype": dtype, "max_batch": 8}
    g = prov["grounder"]
    if g["kind"] == "owlv2":
        g.update(model=paths["owlv2"], device=device, dtype=dtype)
    elif g["kind"] == "falcon":
        g.update(model=paths["falcon"], backend="torch", device=device, dtype=dtype,
                 max_new_tokens=FALCON_DECODE_STEPS)
    else:
        raise SystemExit(f"{project}: grounder {g['kind']!r} is not benchmarked here")
    if masks:
        prov["segmenter"] = {"model": paths["sam"], "device": device, "dtype": dtype}
    data["thresholds"].update(filter=0.0, grounding=0.0, verify=0.0, max_boxes=BOXES)
    return parse_project(data, f"{PROJECTS[project]} (benchmark models)")


def fixed_boxes(width: int, height: int, n: int) -> np.ndarray:
    """``n`` side-by-side square boxes, each ~28 % of the width (at most 90 % of the height), not overlapping."""
    side = min(0.28 * width, 0.9 * height)
    step = width / n
    x0 = np.arange(n) * step + (step - side) / 2
    y0 = (height - side) / 2
    return np.column_stack([x0, np.full(n, y0), x0 + side, np.full(n, y0 + side)]).astype(np.float32)


class FixedBoxes:
    """The real grounder runs on the view it is given (its seconds are the ground stage's); its answer is then
    replaced by ``n`` fixed boxes (``fixed_boxes``) labelled with the first query (module docstring)."""

    gives_masks = False
    finds_similar = False

    def __init__(self, inner, n: int):
        self.inner, self.n, self.found = inner, n, []

    def describe(self) -> dict:
        return {**self.inner.describe(), "benchmark": f"answers {self.n} fixed boxes"}

    def boxes(self, image, queries):
        from pipeline.detections import Detections
        self.found.append(len(self.inner.boxes(image, queries)))
        q = list(queries)[0]
        return Detections(xyxy=fixed_boxes(*image.size, self.n), scores=np.ones(self.n, np.float32),
                          labels=[q] * self.n, queries=[q] * self.n)


def child(spec: dict) -> dict:
    """One configuration in this (fresh) process: load, warm up, run each photo size once, estimate each."""
    if spec["threads"]:
        import torch
        torch.set_num_threads(spec["threads"])
    if spec["quick"]:
        import falcon_perception

        from pipeline.tiny.falcon import tiny_model_args
        falcon_perception.get_model_args = lambda variant: tiny_model_args(spec["paths"]["falcon"])
    from benchmarks.falcon_cpu import ScriptedTokens
    from benchmarks.predict_budget import jpeg
    from pipeline import cost, hardware
    from pipeline.cascade import Pipeline
    from pipeline.model_version import dtype_choices, model_version
    from pipeline.providers.registry import get_grounder

    device = spec["device"]
    cfg = bench_config(spec["project"], spec["dtype"], device, spec["paths"], spec["masks"])
    choices = dtype_choices(cfg)
    sizes = [tuple(s) for s in spec["sizes"]]
    estimates = {}
    for size in sizes:
        est = cost.estimate(cfg, size, boxes=cost.BOXES)
        estimates[f"{size[0]}x{size[1]}"] = {"stages": {s.stage: (s.seconds * (est.boxes if s.per == "box" else 1)
                                                                  if s.seconds is not None else None)
                                                        for s in est.stages},
                                             "total": est.per_image, "rates": est.rates,
                                             "notes": {s.stage: s.note for s in est.stages}}
    t0 = now()
    real = get_grounder(cfg.providers.grounder)
    if cfg.providers.grounder.kind == "falcon":
        ScriptedTokens.install(real, cost.FALCON_DECODE_STEPS)
    grounder = FixedBoxes(real, cost.BOXES)
    pipe = Pipeline(cfg, grounder=grounder).load()
    hardware.synchronize(device)
    load_s = now() - t0
    masks = spec["masks"]

    def run(size) -> dict:
        photo = pipe.open(jpeg(size))
        hardware.synchronize(device)
        t = now()
        res = pipe.run(photo, masks=masks)
        hardware.synchronize(device)
        wall = now() - t
        if not res.passed_filter or len(res.verify_answers) != cost.BOXES:
            raise SystemExit(f"{size}: the cascade did not run whole ({res.note!r}, {len(res.verify_answers)} "
                             f"verified): the benchmark opens every gate, so this is a bug")
        return {"stages": dict(res.timings), "total": wall, "grounder_found": grounder.found[-1]}

    warm = {"total": float("nan")}
    if spec.get("warmup", True):
        log(f"  [{spec['project']} {spec['dtype']}] loaded in {load_s:.0f} s; warm-up on {WARMUP[0]}x{WARMUP[1]}")
        warm = run(WARMUP)
    measured = {}
    for size in sizes:
        key = f"{size[0]}x{size[1]}"
        measured[key] = run(size)
        log(f"  [{spec['project']} {spec['dtype']}] {key}: {measured[key]['total']:.1f} s "
            + ", ".join(f"{k} {v:.1f}" for k, v in measured[key]["stages"].items())
            + f" (estimate {estimates[key]['total']:.1f} s)")
    # the machine is shared: the matmul speed again after the photos (the estimate used the one before them)
    probe_device = "cuda" if device.startswith("cuda") else "cpu"
    rates_after = hardware._measure(probe_device, tuple(sorted({c.dtype for c in choices.values()})),
                                    3, hardware.PROBE_SECONDS, hardware.PROBE_SIZE)
    out = {"project": spec["project"], "dtype": spec["dtype"], "load_s": load_s, "warmup_s": warm["total"],
           "rates_after": rates_after,
           "resolved": {role: c.dtype for role, c in choices.items()},
           "reasons": {role: c.reason for role, c in choices.items()},
           "model_version": model_version(cfg), "measured": measured, "estimates": estimates,
           "peak_rss_gib": peak_rss_mib() / 1024, "torch_threads": __import__("torch").get_num_threads()}
    if device.startswith("cuda"):
        import torch
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


# -- the parent: rounds of children ------------------------------------------------------------------------
def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def needs_gib(dtype: str, quick: bool, device: str) -> float:
    """Host memory a configuration needs free before it starts: the 3B VLM dominates (fp32 ~15 GB)."""
    if quick or device.startswith("cuda"):
        return 2.0
    from pipeline.hardware import choose_dtype
    return 18.0 if choose_dtype("cpu", dtype).dtype == "fp32" else 10.0


def wait_for_memory(gib: float, patience_s: float) -> bool:
    t0 = time.monotonic()
    while mem_available_gib() < gib:
        if time.monotonic() - t0 > patience_s:
            return False
        log(f"  waiting for {gib:.0f} GiB free (now {mem_available_gib():.1f} GiB; the machine is shared)")
        time.sleep(30)
    return True


def run_child(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        raise SystemExit(f"child {spec['project']} {spec['dtype']} failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}")
    return json.loads(lines[-1][len(MARK):])


def cpu_line() -> str:
    from pipeline.hardware import machine
    m = machine()
    return f"{m.cpu} ({m.arch}), {m.physical_cores} physical / {m.logical_cores} logical cores; flags: " \
           f"{' '.join(sorted(m.flags)) or '-'}"


def ratio(est, meas) -> str:
    return "-" if est is None or not meas else f"{est / meas:.2f}"


def report(results: list[dict]) -> None:
    import torch

    from pipeline import cost
    by = {}
    for r in results:
        by.setdefault((r["project"], r["dtype"]), []).append(r)
    first = results[0]
    print("\n## photo_cost: configuration")
    for cmd in dict.fromkeys(r.get("command", "") for r in results):
        print(f"- command: {cmd}")
    print(f"- CPU: {cpu_line()}")
    print(f"- torch {torch.__version__}, {first['torch_threads']} intra-op threads per child; device "
          f"{first.get('device', 'cpu')}")
    print("- load (uptime) before each configuration: " + "; ".join(
        f"{r['project']} {r['dtype']}: {r.get('load_before', '?')}" for r in results)
        + " (2 cores shared with other engineers' tests)")
    quick = first.get("quick", False)
    vlm = "tiny test Qwen2.5-VL (sanity only)" if quick else "Qwen2.5-VL-3B-Instruct published shape"
    print(f"- models: VLM {vlm} in-process (the shipped projects use a server VLM: swapped, see the docstring); "
          "grounders "
          f"{'tiny test' if quick else 'OWLv2-base / Falcon-Perception 0.6B published shapes'}; random weights")
    print(f"- cascade: the project's stages with every gate open; {cost.BOXES} fixed boxes verified "
          f"(crops of budgets.verify_pixels); Falcon stops after {cost.FALCON_DECODE_STEPS} decode steps per query")
    if any(not r.get("warmup", True) for r in results):
        print("- no warm-up photo (--no-warmup): the first photo of each child pays the first-call costs")
    print("- rounds: configurations interleaved (order alternating between rounds), a fresh child process each; "
          "medians over the runs column")
    print(f"- estimate: cost.estimate(cfg, photo size, boxes={cost.BOXES}) in each child (its own matmul probe); "
          f"cost.EFFICIENCY = {cost.EFFICIENCY}")
    for (project, dtype), rs in by.items():
        resolved = ", ".join(f"{k} {v}" for k, v in rs[0]["resolved"].items() if k in ("vlm", "grounder"))
        print(f"- {project} {dtype}: {resolved}; {rs[0]['reasons'].get('vlm', '')}; model_version "
              f"{rs[0]['model_version']}")

    rows, eff = [], {}
    stage_names = ["filter", "ground", "verify"] + (["segment"] if any(r.get("masks") for r in results) else [])
    sizes = list(dict.fromkeys(k for r in results for k in r["measured"]))
    order = [(p, d, size) for p in dict.fromkeys(r["project"] for r in results) for size in sizes
             for d in dict.fromkeys(r["dtype"] for r in results)]
    for project, dtype, size in order:
        rs = [r for r in by.get((project, dtype), []) if size in r["measured"]]
        if not rs:
            continue
        meas = {s: median(r["measured"][size]["stages"].get(s, float("nan")) for r in rs) for s in stage_names}
        total = median(r["measured"][size]["total"] for r in rs)
        est_stages = {s: median(r["estimates"][size]["stages"].get(s) or float("nan") for r in rs)
                      for s in stage_names}
        est_total = median(r["estimates"][size]["total"] for r in rs)
        key = rs[0]["resolved"].get("vlm", "fp32")
        e = eff.setdefault(key, [0.0, 0.0])
        e[0] += est_total
        e[1] += total
        base = by.get((project, "fp32"))
        speed = "-"
        if base and dtype != "fp32":
            speed = f"{median(r['measured'][size]['total'] for r in base) / total:.2f}x"
        cells = [f"{fmt_s(meas[s])} ({fmt_s(est_stages[s])})" for s in stage_names]
        rows.append([project, size, dtype, len(rs), *cells, fmt_s(total), fmt_s(est_total),
                     ratio(est_total, total), speed, f"{median(r['peak_rss_gib'] for r in rs):.1f}"])
    print("\nseconds measured (estimated) per stage; verify = all crops; est/meas = the estimate's total over "
          "the measured one; speed = fp32 total / this total\n")
    print(table(["project", "photo", "dtype", "runs", *[f"{s} s" for s in stage_names], "total s", "estimate s",
                 "est/meas", "speed vs fp32", "peak RSS GiB"], rows))
    after = [r for r in results if r.get("rates_after")]
    if after:
        print("\nmatmul GFLOP/s before the photos (what the estimate used) -> after them, per child: " + "; ".join(
            f"{r['project']} {r['dtype']}: " + ", ".join(
                f"{d} {r['estimates'][next(iter(r['estimates']))]['rates'].get(d, float('nan')):.0f} -> "
                f"{v:.0f}" for d, v in r["rates_after"].items()) for r in after))
    print("\nload s / warm-up s per child: " + "; ".join(
        f"{p} {d}: {median(r['load_s'] for r in rs):.0f} / {median(r['warmup_s'] for r in rs):.0f}"
        for (p, d), rs in by.items()))
    print("\nimplied cost.EFFICIENCY (EFFICIENCY x estimate / measured, all photos of the VLM's resolved dtype): "
          + ", ".join(f"{d}: {cost.EFFICIENCY * e / m:.2f}" for d, (e, m) in eff.items()))
    if any("peak_gpu_gib" in r for r in results):
        print("peak GPU memory GiB: " + ", ".join(f"{p} {d}: {max(r.get('peak_gpu_gib', 0) for r in rs):.1f}"
                                                  for (p, d), rs in by.items()))


def uptime() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--projects", default="stop-signs,drones")
    ap.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES))
    ap.add_argument("--dtypes", default="fp32,auto", help="comma-separated: fp32, auto, bf16, fp16")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads per child (0: torch's default)")
    ap.add_argument("--masks", action="store_true", help="SAM masks for the kept boxes (segment stage)")
    ap.add_argument("--quick", action="store_true", help="tiny models, small photos (smoke run)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="no uncounted warm-up photo per child (the first photo then pays the first-call costs)")
    ap.add_argument("--memory-patience", type=float, default=900, help="seconds to wait for free memory")
    ap.add_argument("--save", help="append each configuration's result to this JSON-lines file as it finishes")
    ap.add_argument("--report", nargs="+", help="print the tables of saved results (JSON-lines files) and exit")
    a = ap.parse_args(argv)
    if a.child:
        print(MARK + json.dumps(child(json.loads(a.child))), flush=True)
        return
    if a.report:
        report([json.loads(ln) for f in a.report for ln in Path(f).read_text().splitlines() if ln.strip()])
        return
    a.sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    if a.quick:
        a.sizes = [(640, 480), (1280, 960)]
    projects, dtypes = a.projects.split(","), a.dtypes.split(",")
    for p in projects:
        if p not in PROJECTS:
            raise SystemExit(f"unknown project {p!r}: {', '.join(PROJECTS)}")
    t_start = now()
    paths = model_paths(a.quick)  # built here once, not in the children
    results = []
    command = "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])
    for r in range(a.rounds):
        for pi, project in enumerate(projects):
            order = dtypes if (r + pi) % 2 == 0 else list(reversed(dtypes))
            for dtype in order:
                need = needs_gib(dtype, a.quick, a.device)
                if not wait_for_memory(need, a.memory_patience):
                    log(f"round {r + 1} {project} {dtype}: skipped, {mem_available_gib():.1f} GiB free < {need:.0f}")
                    continue
                log(f"round {r + 1}: {project} {dtype} (load {uptime()})")
                load_before = uptime()
                res = run_child({"project": project, "dtype": dtype, "device": a.device, "paths": paths,
                                 "sizes": a.sizes, "quick": a.quick, "masks": a.masks, "threads": a.threads,
                                 "warmup": a.warmup})
                res.update(command=command, load_before=load_before, device=a.device, quick=a.quick, masks=a.masks,
                           round=r + 1, warmup=a.warmup)
                results.append(res)
                if a.save:
                    with open(a.save, "a") as f:
                        f.write(json.dumps(res) + "\n")
    if not results:
        raise SystemExit("nothing ran")
    report(results)
    print(f"\nwall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
