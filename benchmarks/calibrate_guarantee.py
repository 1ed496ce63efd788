"""Calibrate with and without a guarantee, over many synthetic projects: how often the chosen thresholds miss
the target precision on new tasks.

    .venv/bin/python benchmarks/calibrate_guarantee.py                 # 100 projects, target 0.9, delta 0.1
    .venv/bin/python benchmarks/calibrate_guarantee.py --projects 1000 --tasks 100

Each project is a ``pipeline.synthetic.reviewed.ProjectModel`` drawn at random (boxes per task, the
grounder's recall, wrong candidates per task, and the score distributions of right and wrong candidates),
with ``--tasks`` reviewed tasks drawn from it. Both modes see the same reviewed tasks:

* ``fit`` (``label-factory calibrate``): the grounding and verify thresholds with the most right boxes at
  precision >= target on the reviewed tasks;
* ``guarantee`` (``label-factory calibrate --guarantee --delta D``): the verify threshold certified by
  fixed-sequence binomial tests (pipeline/calibrate/guarantee.py), the grounding threshold left at 0.1.

The precision and recall the thresholds give on new tasks are the model's own (exact expectations over all
future tasks, ``ProjectModel.precision``), so a miss is a real miss, not sampling noise of a test set. A
project where a mode chooses nothing (refused) keeps its thresholds and is counted apart. Pure CPU, seconds."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, print_config, table  # noqa: E402


def run(projects: int, n_tasks: int, target: float, delta: float, seed: int = 0) -> dict:
    import numpy as np

    from pipeline.calibrate.guarantee import fit_guaranteed
    from pipeline.calibrate.search import fit
    from pipeline.config import Thresholds
    from pipeline.synthetic.reviewed import random_model, tasks

    current = Thresholds()
    rows = {"fit": [], "guarantee": []}
    for p in range(projects):
        rng = np.random.default_rng([seed, p])
        model = random_model(rng)
        reviewed = tasks(model, n_tasks, rng)
        for mode, fitted in (("fit", fit(reviewed, ["A"], target)),
                             ("guarantee", fit_guaranteed(reviewed, ["A"], target, current, delta))):
            if "A" not in fitted.per_label:
                rows[mode].append(None)
                continue
            th = fitted.thresholds(current)
            g, v = th.grounding_for("A"), th.verify_for("A")
            rows[mode].append((model.precision(g, v), model.recall_at(g, v)))
    out = {}
    for mode, rs in rows.items():
        chosen = [r for r in rs if r is not None]
        prec = np.array([r[0] for r in chosen])
        out[mode] = {"chosen": len(chosen), "refused": len(rs) - len(chosen),
                     "mean_precision": float(prec.mean()) if len(prec) else None,
                     "min_precision": float(prec.min()) if len(prec) else None,
                     "misses": int((prec < target).sum()),
                     "miss_rate": float((prec < target).mean()) if len(prec) else None,
                     "mean_recall": float(np.mean([r[1] for r in chosen])) if chosen else None}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=200, help="reviewed tasks per project (default 200)")
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(a.projects, a.tasks, a.target, a.delta, a.seed)
    print_config("calibrate_guarantee: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:])),
        "projects": f"{a.projects} synthetic projects (pipeline/synthetic/reviewed.py, seed {a.seed}), "
                    f"{a.tasks} reviewed tasks each, one label",
        "target": f"precision >= {a.target}; guarantee: delta {a.delta}",
        "precision on new tasks": "exact (the project model's expectation), not a test-set estimate",
        **machine()})
    rows = []
    for mode, r in res.items():
        pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
        num = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        rows.append([mode, r["chosen"], r["refused"], num(r["mean_precision"]), num(r["min_precision"]),
                     f"{r['misses']} ({pct(r['miss_rate'])})", pct(r["mean_recall"])])
    print("\n### thresholds chosen on the reviewed tasks, measured on new tasks\n")
    print(table(["mode", "projects calibrated", "refused", "mean precision", "worst precision",
                 f"missed {a.target:g}", "mean recall"], rows))
    g = res["guarantee"]
    ok = g["miss_rate"] is not None and g["miss_rate"] <= a.delta
    print(f"\nguarantee: misses the target in {g['misses']} of {g['chosen']} calibrated projects "
          f"(goal <= delta = {a.delta:g}: {'met' if ok else 'NOT met'}); {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
