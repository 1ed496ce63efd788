"""The loop, measured on the synthetic world: pre-annotate -> review -> calibrate -> train -> pre-annotate better.

    .venv/bin/python benchmarks/loop.py --plots docs/images    # the full run (background it: hours on 2 cores)
    .venv/bin/python benchmarks/loop.py --report DIR --plots docs/images   # the tables and plots of a run in DIR
    .venv/bin/python benchmarks/loop.py --quick                # a small sanity run (minutes)

The world (pipeline/synthetic): ``--pool`` scenes to label and a fixed ``--held-out`` set, at ``--size``
(1280x960), four classes among look-alikes. Every run starts from nothing and does, per round:

1. **select** ``--per-round`` unlabelled tasks: round 0 at random; then either the least certain first
   (``uncertain``: the task score of the routed prediction, pipeline/certainty.py, as ``predict --order
   uncertain`` sorts) or at random (``random``);
2. **pre-annotate** them: round 0 with the SIMULATED cascade teacher (pipeline/synthetic/teacher.py: the truth
   with a stated miss rate, look-alike and false boxes, box jitter, verify-like scores; or nothing, ``--round0
   none``), later rounds with the served student routed as the product routes it (pipeline/route.py: sure
   boxes kept, the band verified by the simulated VLM, unsure images through the simulated cascade);
3. **review**: the SIMULATED annotator (pipeline/synthetic/annotator.py) keeps, moves, relabels, deletes and
   draws against the truth, and submits each annotation with its ``lead_time`` from published per-action
   costs (the ``--cost-*`` flags) into the store: a real Label Studio 1.23 (``--store labelstudio``, default:
   one project per run, the world imported as the importer imports) or an in-process store (``memory``);
4. **calibrate** (after round 0): the cascade's filter and per-label verify thresholds for ``--target``
   precision from the reviewed tasks (``calibrate.search.fit``);
5. **export** every reviewed task (``distill.export``; from Label Studio through its API) and **train** the
   student (ultralytics YOLO from ``yolo11n.yaml``, never a downloaded checkpoint; from round 1 on it starts
   from the served student's weights) for about ``--passes`` training images per round;
6. **promote** it only if its AP50:95 on the export's test split (reviewed tasks no student trains on) beats the
   served student's (pipeline/distill/promote.py), then calibrate the routing band on the val and test splits
   (``calibrate.band.fit_band``);
7. **measure** on the fixed held-out set: the served student's AP50 and AP50:95 (pipeline/evaluate/ap.py), and
   routing on vs off: foundation-model seconds per image and the precision of what is predicted.

Foundation-model seconds are ESTIMATES from pipeline/cost.py for the real shapes (Qwen2.5-VL-3B for filter and
verify, Falcon Perception for ground, at this machine's measured matmul speed); their calls (which stage, how
many crops) come from the simulated cascade and the routing decisions. The student's seconds are measured.
Annotator seconds and acceptance are the simulation's. The main run is seed 0 with uncertainty-first selection
(``--rounds`` rounds); ``--seeds`` runs compare ``uncertain`` with ``random`` over ``--compare-rounds`` rounds
(both strategies share each seed's round 0). Results go to ``--out`` (results.json), plots to ``--plots``."""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import CACHE, log, machine, print_config, table  # noqa: E402
from pipeline.calibrate.band import TO_CASCADE  # noqa: E402

HELD_OUT_START = 1_000_000  # scene indices of the held-out set (the pool's are 0..pool-1)
RATIOS = (0.8, 0.1, 0.1)  # train / val (band) / test (promotion)


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6, help="rounds of the main run (default 6)")
    ap.add_argument("--per-round", type=int, default=50, help="tasks reviewed per round (default 50)")
    ap.add_argument("--pool", type=int, default=600, help="unlabelled scenes (default 600)")
    ap.add_argument("--held-out", type=int, default=200, help="fixed held-out scenes (default 200)")
    ap.add_argument("--size", default="1280x960", help="scene size (default 1280x960)")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--imgsz", type=int, default=256, help="student training/inference size (default 256)")
    ap.add_argument("--passes", type=int, default=2000, help="training images seen per round (default 2000)")
    ap.add_argument("--first-passes", type=int, default=4000,
                    help="training images seen in round 0, from random weights (default 4000)")
    ap.add_argument("--min-epochs", type=int, default=20,
                    help="epochs per round at least, however many images --passes makes (default 20; 1: --passes "
                         "alone, as before: 7 epochs by the 8th round)")
    ap.add_argument("--zoom", type=float, default=4.0,
                    help="the student's zoom refinement (providers.grounder.zoom / route.zoom; default 4, 0: off)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the selection comparison ('' for none)")
    ap.add_argument("--compare-rounds", type=int, default=4, help="rounds of each comparison run (default 4)")
    ap.add_argument("--no-main", action="store_true", help="only the comparison runs (seed 0 uncertain included)")
    ap.add_argument("--report", metavar="DIR", default=None,
                    help="only print (and with --plots draw) the results in DIR: results.json, or the rounds that "
                         "finished (progress.json) of a run that was stopped")
    ap.add_argument("--sweep-only", metavar="DIR", default=None,
                    help="only the routing sweep, for the last served student of the main run in DIR (its "
                         "results.json), added to that file")
    ap.add_argument("--target", type=float, default=0.9, help="precision target of calibration (default 0.9)")
    ap.add_argument("--max-uncertain", type=int, default=2, help="route.max_uncertain (default 2)")
    ap.add_argument("--to-cascade", type=float, default=TO_CASCADE,
                    help=f"calibrate --route --to-cascade: the share of images the band may send through the whole "
                         f"cascade (default {TO_CASCADE})")
    ap.add_argument("--round0", choices=["teacher", "none"], default="teacher")
    ap.add_argument("--store", choices=["labelstudio", "memory"], default="labelstudio")
    ap.add_argument("--teacher-miss", type=float, default=0.15)
    ap.add_argument("--teacher-false", type=float, default=0.3, help="false boxes per image (Poisson)")
    ap.add_argument("--teacher-lookalike", type=float, default=0.6, help="share of look-alikes taken for objects")
    ap.add_argument("--teacher-jitter", type=float, default=0.04, help="box edge noise, share of the side")
    ap.add_argument("--teacher-confusion", type=float, default=0.03)
    for name, default, what in (("verify", 1.6, "verifying a box (Papadopoulos et al. 2016)"),
                                ("draw", 25.5, "drawing a box the classic way, as Label Studio's rectangle tool "
                                               "does (Su, Deng, Fei-Fei 2012; by extreme clicking: 7.0, "
                                               "Papadopoulos et al. 2017, --alt-draw)"),
                                ("move", 25.5, "fixing a box (assumed: a redraw)"),
                                ("relabel", 3.2, "changing a label (assumed: two verifications)"),
                                ("delete", 1.6, "deleting a box (assumed: a verification)"),
                                ("image", 1.6, "looking over an image (assumed: a verification)")):
        ap.add_argument(f"--cost-{name}", type=float, default=default, help=f"seconds for {what}; default {default}")
    ap.add_argument("--alt-draw", type=float, default=7.0,
                    help="annotator seconds are also reported with drawing and fixing a box at this cost (default "
                         "7.0: extreme clicking, Papadopoulos et al. 2017)")
    ap.add_argument("--keep-iou", type=float, default=0.8,
                    help="the annotator keeps a box as it is from this IoU with the true one (default 0.8)")
    ap.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    ap.add_argument("--plots", default=None, help="write loop-learning-curve.png and loop-seconds.png here")
    ap.add_argument("--quick", action="store_true", help="small world, 2 rounds, no comparison: a sanity run")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.per_round, a.pool, a.held_out, a.size = 2, 16, 40, 16, "640x480"
        a.passes, a.first_passes, a.seeds, a.compare_rounds = 200, 400, "", 0
    a.size = tuple(int(v) for v in a.size.split("x"))
    a.seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    return a


# -- the world on disk -----------------------------------------------------------------------------------------
@dataclass
class Env:
    a: argparse.Namespace
    classes: list
    pool_root: Path
    pool: dict  # entry id -> truth record
    held: dict
    held_root: Path
    paths: dict  # entry id -> image path
    teacher: object
    costs: object
    seconds: dict  # foundation-model seconds per call: filter, ground, verify (per crop)
    cost_note: str
    out: Path
    alt_costs: object = None  # the annotator's costs with the other published drawing time
    ls: object = None  # a running Label Studio, with --store labelstudio


def world_env(a) -> Env:
    from pipeline.importer.manifest import Manifest
    from pipeline.synthetic.annotator import Costs
    from pipeline.synthetic.project import read_truth, write_world
    from pipeline.synthetic.teacher import Teacher
    from pipeline.synthetic.world import World
    world = World(a.world_seed, size=a.size)
    base = CACHE / f"loop-world-{a.world_seed}-{a.size[0]}x{a.size[1]}"
    pool_root, held_root = base / "pool", base / "held-out"
    t0 = time.perf_counter()
    log(f"world: {a.pool} + {a.held_out} scenes at {a.size[0]}x{a.size[1]} in {base} (made once) ...")
    write_world(world, range(a.pool), pool_root, name="loop-pool")
    write_world(world, range(HELD_OUT_START, HELD_OUT_START + a.held_out), held_root, name="loop-held-out")
    log(f"world ready in {time.perf_counter() - t0:.0f} s")
    paths = {}
    for root in (pool_root, held_root):
        for e in Manifest.load(root):
            paths[e["id"]] = root / e["path"]
    pool = {k: v for k, v in read_truth(pool_root).items() if v["index"] < a.pool}
    end = HELD_OUT_START + a.held_out
    held = {k: v for k, v in read_truth(held_root).items() if HELD_OUT_START <= v["index"] < end}
    teacher = Teacher(miss=a.teacher_miss, confusion=a.teacher_confusion, jitter=a.teacher_jitter,
                      lookalike_rate=a.teacher_lookalike, false_per_image=a.teacher_false)
    costs = Costs(verify=a.cost_verify, draw=a.cost_draw, move=a.cost_move, relabel=a.cost_relabel,
                  delete=a.cost_delete, image=a.cost_image)
    alt = Costs(verify=a.cost_verify, draw=a.alt_draw, move=a.alt_draw, relabel=a.cost_relabel,
                delete=a.cost_delete, image=a.cost_image)
    seconds, note = cost_table(world, a.size)
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="lf-loop-"))
    out.mkdir(parents=True, exist_ok=True)
    return Env(a, world.classes, pool_root, pool, held, held_root, paths, teacher, costs, seconds, note, out,
               alt_costs=alt)


def cost_table(world, size) -> tuple[dict, str]:
    """Foundation-model seconds per call on this machine (pipeline/cost.py) for the reference cascade's shapes:
    Qwen2.5-VL-3B (filter on the whole image, verify per crop) and Falcon Perception (ground, one pass per
    query: here one per class)."""
    from benchmarks._qwen import QWEN25_VL_3B
    from pipeline import cost
    from pipeline.config import parse_project
    from pipeline.synthetic.project import project_dict
    shape = Path(tempfile.mkdtemp(prefix="lf-qwen-shape-"))
    (shape / "config.json").write_text(json.dumps({"text_config": QWEN25_VL_3B["text"],
                                                   "vision_config": QWEN25_VL_3B["vision"]}))
    data = project_dict(world)
    data["providers"] = {"vlm": {"kind": "transformers", "model": str(shape), "device": "cpu"},
                         "grounder": {"kind": "falcon", "device": "cpu", "backend": "torch"}}
    est = cost.estimate(parse_project(data), size)
    seconds = {s.stage: s.seconds for s in est.stages}
    note = (f"pipeline/cost.py estimate on this CPU ({', '.join(f'{d} ~{r:.0f} GFLOP/s' for d, r in est.rates.items())}"
            f" measured, x{cost.EFFICIENCY} efficiency): " + "; ".join(f"{s.stage} {s.seconds:.0f} s"
                                                                        f"{' per crop' if s.per == 'box' else ''}"
                                                                        f" ({s.note.split(', ', 1)[-1]})"
                                                                        for s in est.stages))
    return seconds, note


# -- the student ---------------------------------------------------------------------------------------------------
class Student:
    """The served student's raw boxes (every box >= 0.001) for an image, and the seconds it took."""

    def __init__(self, weights: Path, zoom: float = 0.0):
        from pipeline.providers.student import StudentGrounder
        self.weights = Path(weights)
        self.grounder = StudentGrounder(str(weights), device="cpu", zoom=zoom)
        self.seen: dict = {}  # path -> (boxes, seconds): an image is predicted once per student

    def boxes(self, path: Path):
        """Decoded at half size (JPEG DCT scaling: the student sees --imgsz pixels anyway; at full size with
        --zoom, whose windows are seen at the photo's own resolution), boxes in the original's pixels."""
        if path not in self.seen:
            self.seen[path] = self._boxes(path)
        return self.seen[path]

    def _boxes(self, path: Path):
        from PIL import Image

        from pipeline.detections import Detections
        with Image.open(path) as im:
            full = im.size
            if not self.grounder.zoom:
                im.draft("RGB", (full[0] // 2, full[1] // 2))
            image = im.convert("RGB")
        t0 = time.perf_counter()
        dets = self.grounder.boxes(image)
        seconds = time.perf_counter() - t0
        scale = full[0] / image.width
        return Detections(xyxy=dets.xyxy * scale, scores=dets.scores, labels=dets.labels), seconds


# -- one image through the product: routed, or the cascade alone ---------------------------------------------------
@dataclass
class Predicted:
    shown: object  # Detections shown in Label Studio
    calls: dict  # foundation-model calls by stage
    path: str  # "student" / "cascade" / "teacher" / "nothing"
    certainty: float = 1.0
    student_seconds: float = 0.0


def cascade_alone(env: Env, record: dict, th) -> Predicted:
    from pipeline import certainty
    ans = env.teacher.answer(record)
    return Predicted(ans.kept(th), ans.calls(th), "cascade",
                     certainty.task_certainty(ans.filter_p, ans.candidates, th))


def routed(env: Env, record: dict, raw, seconds: float, route_cfg, th) -> Predicted:
    """What ``Pipeline.run`` does with a route (pipeline/route.py), with the simulated cascade and VLM."""
    from types import SimpleNamespace

    import numpy as np

    from pipeline import certainty, route, stages
    from pipeline.config import LabelThresholds
    from pipeline.detections import Detections
    at_floor = th.model_copy(update={"grounding": route_cfg.floor, "per_label": {
        lab: LabelThresholds(grounding=route_cfg.floor_for(lab)) for lab in env.classes}})
    dets = Detections(xyxy=raw.xyxy, scores=raw.scores, labels=raw.labels)
    stages.select(dets, SimpleNamespace(width=record["width"], height=record["height"]), at_floor)
    decision = route.decide(dets, route_cfg)
    if decision.path == route.CASCADE:
        out = cascade_alone(env, record, th)
        out.student_seconds = seconds
        return out
    accepted, band = dets[decision.accepted], dets[decision.band]
    p = [env.teacher.verify_p(record, b, lab) for b, lab in zip(band.xyxy, band.labels)]
    band.set_verify_scores(np.arange(len(band)), p)
    stages.drop_below(band, band.verify_scores, [th.verify_for(lab) for lab in band.labels], "verify", "verify")
    both = Detections.merge([accepted, band])
    shown = both.active()
    shown = Detections(xyxy=shown.xyxy, scores=shown.final_scores(), labels=shown.labels)
    cert = certainty.task_certainty(None, both, route.certainty_thresholds(route_cfg, th))
    return Predicted(shown, {"verify": len(band)}, "student", cert, seconds)


def foundation_seconds(env: Env, calls: dict) -> float:
    return sum(env.seconds[stage] * n for stage, n in calls.items())


def precision_counts(shown, truth) -> tuple[int, int]:
    from pipeline.evaluate.matching import match_boxes
    recs = [r for r in match_boxes(shown, truth) if r.predicted]
    tp = sum(r.true_positive for r in recs)
    return tp, len(recs) - tp


# -- where annotations go --------------------------------------------------------------------------------------------
class MemoryStore:
    """Annotations kept in this process, exported with the same writer as a Label Studio export."""
    name = "in-process store"

    def __init__(self, env: Env, run: str):
        self.env, self.annotations = env, {}
        self.ids = {e: i + 1 for i, e in enumerate(sorted(env.pool))}

    def annotate(self, entry: str, annotation: dict) -> None:
        self.annotations[entry] = annotation

    def export(self, out: Path) -> dict:
        from pipeline.distill.export import write_dataset
        from pipeline.distill.reviewed import Example
        from pipeline.images import open_image
        exs = [Example(self.ids[e], e, "annotation", self.ids[e], a["result"])  # the output control's regions
               for e, a in self.annotations.items()]
        return write_dataset(exs, out, "yolo", lambda url, _tid: open_image(self.env.paths[url].read_bytes()),
                             self.env.classes, ratios=RATIOS, progress=False)


class LabelStudioStore:
    """One Label Studio project per run: the pool imported as ``label-factory import`` imports, annotations
    submitted through the API, exports fetched back through it."""
    name = "Label Studio 1.23 (real server, one project per run)"

    def __init__(self, env: Env, run: str):
        import yaml

        from pipeline.atomic import save_text
        from pipeline.synthetic.project import project_dict, to_label_studio
        from pipeline.synthetic.world import World
        self.env, self.ls = env, env.ls
        title = f"loop-{run}-{int(time.time())}"
        save_text(env.pool_root / f"{title}.yaml",
                  yaml.safe_dump(project_dict(World(env.a.world_seed), title), sort_keys=False))
        t0 = time.perf_counter()
        got = to_label_studio(env.pool_root, self.ls.url, self.ls.token, name=title)
        self.project, self.tasks = got["project"], got["tasks"]
        self.client = self.ls.client()
        log(f"{run}: Label Studio project {self.project}: {got['imported']} tasks imported in "
            f"{time.perf_counter() - t0:.0f} s")

    def annotate(self, entry: str, annotation: dict) -> None:
        self.client.annotations.create(id=self.tasks[entry], **annotation)

    def export(self, out: Path) -> dict:
        from pipeline.distill.export import export_project
        from pipeline.labelstudio.media import fetch_image
        url, key = self.ls.url, self.ls.token
        return export_project(self.client, self.project, out, "yolo",
                              lambda u, tid: fetch_image(u, tid, label_studio_url=url, api_key=key),
                              ratios=RATIOS, classes=self.env.classes, label_studio_url=url, progress=False)


# -- one run ----------------------------------------------------------------------------------------------------------
@dataclass
class Served:
    weights: Path
    student: Student
    band: dict = field(default_factory=dict)

    def route(self, classes, max_uncertain: int):
        """The route of this student: each label's calibrated band; a label calibrate refused has every student box
        over the default floor verified (accept 1.0: none kept unseen)."""
        from pipeline.config import Route, RouteBand
        per_label = {lab: self.band.get(lab) or RouteBand(floor=0.1, accept=1.0) for lab in classes}
        return Route(student=str(self.weights), max_uncertain=max_uncertain, per_label=per_label,
                     zoom=self.student.grounder.zoom)


def cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def measure_held_out(env: Env, served: Served, th) -> dict:
    """The served student on the held-out set: AP, routing on vs off (seconds, precision), and the simulated
    annotator's seconds on each held-out image as routing pre-annotates it, against drawing every box."""
    from pipeline.evaluate.ap import average_precision
    from pipeline.synthetic.annotator import review
    from pipeline.synthetic.project import truth_detections
    route_cfg = served.route(env.classes, env.a.max_uncertain)
    pairs, on, off, student_s = [], [], [], []
    tp_on = fp_on = tp_off = fp_off = paths = 0
    spent = spent_off = scratch = 0.0
    for k, (entry, rec) in enumerate(sorted(env.held.items())):
        truth = truth_detections(rec)
        raw, sec = served.student.boxes(env.paths[entry])
        pairs.append((k, raw, truth))
        c = cascade_alone(env, rec, th)
        r = routed(env, rec, raw, sec, route_cfg, th)
        on.append(foundation_seconds(env, r.calls))
        off.append(foundation_seconds(env, c.calls))
        student_s.append(sec)
        paths += r.path == "cascade"
        tp, fp = precision_counts(r.shown, truth)
        tp_on, fp_on = tp_on + tp, fp_on + fp
        tp, fp = precision_counts(c.shown, truth)
        tp_off, fp_off = tp_off + tp, fp_off + fp
        rv = review(r.shown, truth, env.costs, keep_iou=env.a.keep_iou)
        spent, scratch = spent + rv.seconds, scratch + rv.from_scratch
        spent_off += review(c.shown, truth, env.costs, keep_iou=env.a.keep_iou).seconds
    ap = average_precision(pairs)
    n = len(env.held)
    return {"ap50": ap["ap50"], "ap50_95": ap["ap50_95"],
            "labels": {lab: v["ap50"] for lab, v in ap["labels"].items()},
            "routing": {"labels_calibrated": sorted(served.band), "foundation_s_on": sum(on) / n,
                        "foundation_s_off": sum(off) / n,
                        "student_s": sum(student_s) / n, "to_cascade": paths / n,
                        "precision_on": tp_on / (tp_on + fp_on) if tp_on + fp_on else None,
                        "precision_off": tp_off / (tp_off + fp_off) if tp_off + fp_off else None,
                        "recall_on": tp_on / max(1, sum(len(p[2]) for p in pairs)),
                        "recall_off": tp_off / max(1, sum(len(p[2]) for p in pairs))},
            "annotator": {"seconds_per_image": spent / n, "scratch_per_image": scratch / n,
                          "share": spent / scratch if scratch else None,
                          "cascade_share": spent_off / scratch if scratch else None}}


def calibrate_cascade(env: Env, reviews: dict, th):
    """The cascade's filter and per-label verify thresholds for the target, from the reviewed tasks."""
    import math as _m

    from pipeline.calibrate.search import Reviewed, fit
    tasks = []
    for k, (entry, rv) in enumerate(sorted(reviews.items())):
        ans = env.teacher.answer(env.pool[entry])
        tasks.append(Reviewed(k + 1, ans.filter_p if not _m.isnan(ans.filter_p) else _m.nan, ans.candidates,
                              rv.annotation))
    return fit(tasks, env.classes, env.a.target).thresholds(th)


def band_for(env: Env, served: Served, export: Path) -> tuple[dict, dict]:
    """The routing band of the served student from the export's val and test splits (tasks it never trained on)."""
    from pipeline.calibrate.band import KEEP_RECALL, fit_band
    from pipeline.calibrate.search import Reviewed
    from pipeline.distill.promote import held_out
    tasks = []
    for split in ("val", "test"):
        h = held_out(export, split)
        for path, truth in zip(h.images, h.truth):
            raw, _ = served.student.boxes(path)
            tasks.append(Reviewed(len(tasks) + 1, math.nan, raw, truth))
    return fit_band(tasks, env.classes, env.a.target, keep_recall=KEEP_RECALL,
                    route=Served(served.weights, served.student).route(env.classes, env.a.max_uncertain),
                    to_cascade=env.a.to_cascade)


def sweep(env: Env, weights: Path, export: Path, th) -> list[dict]:
    """Routing at other settings than the run's, for one student, measured on the held-out set: the share of images
    the band may send through the cascade (``calibrate --route --to-cascade``; 1.0: the floor as ``--keep-recall``
    alone puts it) and ``max_uncertain``, each band calibrated for its ``max_uncertain``."""
    served = Served(Path(weights), Student(Path(weights), env.a.zoom))
    rows = []
    before = env.a.max_uncertain, env.a.to_cascade
    try:
        for share in (1.0, 0.2, 0.1, 0.05):
            for limit in (0, 1, 2, 4):
                env.a.max_uncertain, env.a.to_cascade = limit, share
                band, _ = band_for(env, served, export)
                served.band = band
                m = measure_held_out(env, served, th)["routing"]
                rows.append({"to_cascade_max": share, "max_uncertain": limit, "bands": len(band),
                             "floors": {lab: b.floor for lab, b in band.items()}, **m})
    finally:
        env.a.max_uncertain, env.a.to_cascade = before
    return rows


ZOOMS = (0.0, 2.0, 4.0, 6.0)


def zoom_sweep(env: Env, weights: Path, export: Path, th) -> list[dict]:
    """The same student with each zoom refinement (providers/zoom.py), its band fitted for it, measured on the
    held-out set: the annotator's seconds, AP and the student's own seconds side by side in one run."""
    rows = []
    for z in ZOOMS:
        served = Served(Path(weights), Student(Path(weights), z))
        served.band, _ = band_for(env, served, export)
        held = measure_held_out(env, served, th)
        rows.append({"zoom": z, "ap50": held["ap50"], "ap50_95": held["ap50_95"], **held["annotator"],
                     "student_s": held["routing"]["student_s"], "foundation_s_on": held["routing"]["foundation_s_on"],
                     "foundation_s_off": held["routing"]["foundation_s_off"],
                     "precision_on": held["routing"]["precision_on"]})
    return rows


def print_zoom_sweep(rows: list[dict]) -> None:
    print(table(["zoom", "held-out AP50", "AP50:95", "annotator s/img vs drawing (classic)", "same, cascade alone",
                 "student ms/img", "foundation s/img routed", "precision routed"],
                [[f"{r['zoom']:g}" if r["zoom"] else "off", f"{r['ap50']:.3f}", f"{r['ap50_95']:.3f}",
                  f"{r['seconds_per_image']:.1f} / {r['scratch_per_image']:.1f} ({r['share']:.0%})",
                  f"{r['cascade_share']:.0%}", f"{r['student_s'] * 1000:.0f}", f"{r['foundation_s_on']:.0f}",
                  _f(r["precision_on"])] for r in rows]))


def print_sweep(rows: list[dict]) -> None:
    """(Runs before the floor's raise swept ``keep_recall`` instead: their rows print with it.)"""
    old = "keep_recall" in rows[0]
    print(table(["keep_recall (floor)" if old else "--to-cascade (floor raised)", "max_uncertain", "labels routed",
                 "foundation s/img routed / cascade", "precision routed / cascade", "recall routed / cascade",
                 "to cascade (held-out)"],
                [[r["keep_recall"] if old else r["to_cascade_max"], r["max_uncertain"], r["bands"],
                  f"{r['foundation_s_on']:.0f} / {r['foundation_s_off']:.0f} ({ratio(r)})",
                  f"{_f(r['precision_on'])} / {_f(r['precision_off'])}",
                  f"{r['recall_on']:.3f} / {r['recall_off']:.3f}", f"{r['to_cascade']:.0%}"] for r in rows]))


def run_loop(env: Env, run: str, strategy: str, seed: int, rounds: int, start: Optional[dict] = None) -> dict:
    import numpy as np

    from pipeline.config import Thresholds
    from pipeline.distill.promote import held_out, promote, score, train_and_score
    from pipeline.distill.train import TrainConfig
    from pipeline.synthetic.annotator import review
    from pipeline.synthetic.project import annotation, truth_detections
    a = env.a
    store = (LabelStudioStore if a.store == "labelstudio" else MemoryStore)(env, run)
    rng = np.random.default_rng([seed, 17])
    th = Thresholds(filter=0.5, grounding=0.0, verify=0.5)  # a new project's cascade thresholds
    served: Optional[Served] = None
    reviews, rows, snapshot = {}, [], start
    for r in range(rounds):
        t_round = time.perf_counter()
        if r == 0 and start is not None:  # the same round 0 as the other strategy of this seed
            for entry, rv in start["reviews"].items():
                reviews[entry] = rv
                store.annotate(entry, annotation(rv.annotation, env.pool[entry]["width"], env.pool[entry]["height"],
                                                 rv.seconds))
            th, served, rows = start["th"], start["served"], [{**start["row"], "strategy": strategy}]
            rng = np.random.default_rng([seed, 17, 1])
            log(f"{run}: round 0 shared with the other strategy of seed {seed}")
            continue
        available = [e for e in sorted(env.pool) if e not in reviews]
        n = min(a.per_round, len(available))
        if served is None:
            chosen = list(rng.choice(available, n, replace=False))
            preds = {e: (cascade_alone(env, env.pool[e], th) if a.round0 == "teacher" else
                         Predicted(truth_detections({"boxes": [], "labels": []}), {}, "nothing")) for e in chosen}
            if a.round0 == "teacher":
                for p in preds.values():
                    p.path = "teacher"
        else:
            route_cfg = served.route(env.classes, a.max_uncertain)
            pick = available if strategy == "uncertain" else list(rng.choice(available, n, replace=False))
            preds = {}
            for e in pick:
                raw, sec = served.student.boxes(env.paths[e])
                preds[e] = routed(env, env.pool[e], raw, sec, route_cfg, th)
            chosen = sorted(pick, key=lambda e: (preds[e].certainty, e))[:n] if strategy == "uncertain" else pick
        counts = {k: 0 for k in ("kept", "moved", "relabeled", "deleted", "added")}
        spent = scratch = spent_alt = scratch_alt = 0.0
        round_reviews = {}
        for e in chosen:
            rec = env.pool[e]
            rv = review(preds[e].shown, truth_detections(rec), env.costs, keep_iou=a.keep_iou)
            store.annotate(e, annotation(rv.annotation, rec["width"], rec["height"], rv.seconds))
            round_reviews[e] = reviews[e] = rv
            for k, v in rv.counts.items():
                counts[k] += v
            spent, scratch = spent + rv.seconds, scratch + rv.from_scratch
            alt = review(preds[e].shown, truth_detections(rec), env.alt_costs, keep_iou=a.keep_iou)
            spent_alt, scratch_alt = spent_alt + alt.seconds, scratch_alt + alt.from_scratch
        if r == 0:
            th = calibrate_cascade(env, round_reviews, th)
        export = env.out / run / f"export-{r}"
        manifest = store.export(export)
        test = held_out(export, "test")
        n_train = manifest["counts"]["train"]["images"]
        epochs = max(a.min_epochs, math.ceil((a.passes if served else a.first_passes) / max(1, n_train)))
        cfg = TrainConfig(data=export, out=env.out / run / f"round-{r}",
                          model=str(served.weights) if served else "yolo11n.yaml", epochs=epochs, imgsz=a.imgsz,
                          batch=a.batch, device="cpu", workers=2, patience=10_000, seed=seed, plots=False, amp=False,
                          extra={"cache": "ram", "val": False, "close_mosaic": min(2, epochs // 3),
                                 "warmup_epochs": 1 if served else 3})
        c0, w0 = cpu_seconds(), time.perf_counter()
        metrics = train_and_score(cfg, test)
        train_cpu, train_wall = cpu_seconds() - c0, time.perf_counter() - w0
        candidate = Served(Path(cfg.out).resolve() / metrics["weights"], None)
        candidate.student = Student(candidate.weights, a.zoom)
        served_test = score(served.weights, test) if served else None
        ok, why = promote(metrics["held_out"], served_test)
        if ok:
            served = candidate
            served.band, band_info = band_for(env, served, export)
        held = measure_held_out(env, served, th)
        predicted = sum(counts[k] for k in ("kept", "moved", "relabeled", "deleted"))
        row = {"round": r, "strategy": strategy, "seed": seed, "reviewed": len(reviews), "train_images": n_train,
               "epochs": epochs, "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
               "test_images": len(test), "candidate_test": metrics["held_out"], "served_test": served_test,
               "promoted": ok, "why": why, "held_out": held,
               "band": {lab: b.model_dump() for lab, b in served.band.items()},
               "cascade_thresholds": {"filter": th.filter, **{lab: th.verify_for(lab) for lab in env.classes}},
               "preannotated_by": sorted({p.path for p in (preds[e] for e in chosen)}),
               "to_cascade": sum(preds[e].path == "cascade" for e in chosen) / max(1, len(chosen)),
               "review": {**counts, "predicted": predicted,
                          "kept_share": counts["kept"] / predicted if predicted else None,
                          "accepted_share": (counts["kept"] + counts["moved"]) / predicted if predicted else None,
                          "seconds_per_image": spent / len(chosen), "scratch_per_image": scratch / len(chosen),
                          "share": spent / scratch if scratch else None,
                          "alt": {"seconds_per_image": spent_alt / len(chosen),
                                  "scratch_per_image": scratch_alt / len(chosen),
                                  "share": spent_alt / scratch_alt if scratch_alt else None}},
               "round_s": round(time.perf_counter() - t_round, 1)}
        rows.append(row)
        save_progress(env, {"run": run, "strategy": strategy, "seed": seed, "store": store.name, "rows": rows})
        log(f"{run} round {r}: {len(reviews)} reviewed, AP50 {held['ap50']:.3f} AP50:95 {held['ap50_95']:.3f} "
            f"(promoted: {ok}), annotator {row['review']['share']:.0%} of drawing, routing {ratio(held['routing'])} "
            f"fewer foundation s, train {train_wall:.0f} s wall / {train_cpu:.0f} s CPU")
        if r == 0:
            snapshot = {"reviews": dict(reviews), "th": th, "served": served, "row": row}
    return {"run": run, "strategy": strategy, "seed": seed, "store": store.name, "rows": rows,
            "round0": snapshot if rounds else None}


# -- progress: each finished round on disk ---------------------------------------------------------------------------
PROGRESS = "progress.json"
SWEEP = "sweep.json"  # the routing sweep of a run that did not finish (--sweep-only)


def _settings(a) -> dict:
    return {k: v for k, v in vars(a).items()}


def save_progress(env: Env, result: dict) -> None:
    """Every run's rounds so far in ``--out``/progress.json, rewritten after each round: a run stopped midway
    keeps what it measured (``--report`` prints it)."""
    from pipeline.atomic import save_text
    path = env.out / PROGRESS
    data = json.loads(path.read_text()) if path.exists() else {"settings": _settings(env.a), "runs": {}}
    data["runs"][result["run"]] = result
    save_text(path, json.dumps(data, indent=1, default=str))


def settings_of(out: Path) -> dict:
    for name in ("results.json", PROGRESS):
        if (out / name).exists():
            return json.loads((out / name).read_text())["settings"]
    raise SystemExit(f"no results.json or {PROGRESS} in {out}")


def comparison_runs(runs: list[dict], seeds: list[int], rounds: int) -> list[dict]:
    """The runs of the seeds both strategies ran, each cut to the rounds both finished (at most ``rounds``)."""
    by = {(r["strategy"], r["seed"]): r for r in runs if r["seed"] in seeds}
    out = []
    for seed in seeds:
        pair = [by.get((s, seed)) for s in ("uncertain", "random")]
        if None in pair:
            continue
        k = min(rounds, *(len(r["rows"]) for r in pair))
        out += [{**r, "rows": r["rows"][:k]} for r in pair if k]
    return out


def results_of(env: Env, runs: list[dict], main_run: Optional[dict], routing_sweep, wall_s, cpu_s,
               zoom_sweep=None) -> dict:
    a = env.a
    return {"settings": _settings(a), "machine": machine(), "store": runs[0]["store"] if runs else None,
            "routing_sweep": routing_sweep, "zoom_sweep": zoom_sweep,
            "foundation_seconds": env.seconds, "cost_note": env.cost_note, "teacher": env.teacher.to_dict(),
            "costs": env.costs.to_dict(),
            "main": {k: v for k, v in main_run.items() if k != "round0"} if main_run else None,
            "comparison": compare(comparison_runs(runs, a.seeds, a.compare_rounds)),
            "runs": [{k: v for k, v in r.items() if k != "round0"} for r in runs],
            "wall_s": wall_s, "cpu_s": cpu_s}


def load_results(env: Env, out: Path) -> dict:
    """results.json of a finished run, or the same assembled from the rounds a stopped one finished."""
    if (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
        # the comparison as this code compares (a run's own may predate a column)
        results["comparison"] = compare(comparison_runs(results["runs"], env.a.seeds, env.a.compare_rounds))
        return results
    data = json.loads((out / PROGRESS).read_text())
    runs = list(data["runs"].values())
    main_run = None if env.a.no_main else data["runs"].get("main-uncertain-s0")
    wall = round(sum(row["round_s"] for r in runs for row in r["rows"]
                     if not (row["round"] == 0 and r["strategy"] == "random")))
    swept = json.loads((out / SWEEP).read_text()) if (out / SWEEP).exists() else {}
    return {**results_of(env, runs, main_run, swept.get("rows"), wall, None, swept.get("zoom")), "stopped": True}


# -- report -----------------------------------------------------------------------------------------------------------
def _f(x, fmt="{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def ratio(rt: dict) -> str:
    off, on = rt["foundation_s_off"], rt["foundation_s_on"]
    return f"{off / on:.1f}x" if on else "inf"


def print_main(main: dict) -> None:
    rows = []
    for r in main["rows"]:
        h, rv, rt = r["held_out"], r["review"], r["held_out"]["routing"]
        rows.append([r["round"], r["reviewed"], r["epochs"],
                     f"{r['train_wall_s'] / 60:.1f} / {r['train_cpu_s'] / 60:.1f}", _f(h["ap50"]), _f(h["ap50_95"]),
                     "yes" if r["promoted"] else "no", "+".join(r["preannotated_by"]),
                     _f(rv["kept_share"], "{:.0%}"), _f(rv["accepted_share"], "{:.0%}"),
                     f"{rv['seconds_per_image']:.1f} / {rv['scratch_per_image']:.1f} ({rv['share']:.0%})",
                     f"{rv['alt']['seconds_per_image']:.1f} / {rv['alt']['scratch_per_image']:.1f} "
                     f"({rv['alt']['share']:.0%})",
                     f"{rt['foundation_s_on']:.0f} / {rt['foundation_s_off']:.0f} ({ratio(rt)})",
                     f"{_f(rt['precision_on'])} / {_f(rt['precision_off'])}",
                     f"{rt['recall_on']:.3f} / {rt['recall_off']:.3f}", f"{rt['student_s'] * 1000:.0f} ms",
                     f"{rt['to_cascade']:.0%}"])
    print(table(["round", "reviewed", "epochs", "train min wall / CPU", "held-out AP50", "AP50:95", "promoted",
                 "pre-annotated by", "kept", "kept+moved", "annotator s/img vs drawing (classic)",
                 "same, drawing by extreme clicking", "foundation s/img routed / "
                 "cascade", "precision routed / cascade", "recall routed / cascade", "student s/img",
                 "routed to cascade"], rows))


def compare(runs: list[dict]) -> dict:
    """Per strategy and round: AP50, AP50:95 and annotator seconds, mean and range over seeds."""
    import numpy as np
    out = {}
    for strategy in sorted({r["strategy"] for r in runs}):
        mine = [r for r in runs if r["strategy"] == strategy]
        rounds = min(len(r["rows"]) for r in mine)
        out[strategy] = []
        for k in range(rounds):
            vals = {m: [r["rows"][k]["held_out"][m] for r in mine] for m in ("ap50", "ap50_95")}
            secs = [r["rows"][k]["review"]["seconds_per_image"] for r in mine]
            spent = [_annotator_minutes(r["rows"][:k + 1]) for r in mine]
            out[strategy].append({"round": k, "reviewed": mine[0]["rows"][k]["reviewed"], "seeds": len(mine),
                                  **{m: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                                     for m, v in vals.items()},
                                  "annotator_s": float(np.mean(secs)), "annotator_min_so_far": float(np.mean(spent)),
                                  "per_seed": {r["seed"]: r["rows"][k]["held_out"]["ap50"] for r in mine}})
    return out


def _annotator_minutes(rows: list[dict]) -> float:
    """The simulated annotator's minutes over these rounds (seconds per image x the images each round reviewed)."""
    total, before = 0.0, 0
    for row in rows:
        total += row["review"]["seconds_per_image"] * (row["reviewed"] - before)
        before = row["reviewed"]
    return total / 60


def plot(results: dict, folder: Path) -> list[Path]:
    """loop-learning-curve.png and loop-seconds.png (the main run), loop-selection.png (the comparison)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    folder.mkdir(parents=True, exist_ok=True)
    out = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(folder / name)
        plt.close(fig)
        out.append(folder / name)

    if results["main"]:
        main = results["main"]["rows"]
        x = [r["reviewed"] for r in main]
        fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=90)
        ax.plot(x, [r["held_out"]["ap50"] for r in main], "o-", label="AP50")
        ax.plot(x, [r["held_out"]["ap50_95"] for r in main], "s--", label="AP50:95")
        ax.axhline(0.8, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="images reviewed", ylabel="held-out AP of the served student", ylim=(0, 1),
               title="the student learns (synthetic world, seed 0)")
        ax.legend(loc="lower right")
        save(fig, "loop-learning-curve.png")
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=90)
        ax = axes[0]
        ax.plot(x, [r["review"]["seconds_per_image"] for r in main], "o-", color="C0",
                label="reviewing the pre-annotations")
        ax.plot(x, [r["review"]["scratch_per_image"] for r in main], "s--", color="C0", label="drawing every box")
        ax.plot(x, [r["review"]["alt"]["seconds_per_image"] for r in main], "o-", color="C1", alpha=0.6,
                label="the same, drawing by extreme clicking")
        ax.plot(x, [r["review"]["alt"]["scratch_per_image"] for r in main], "s--", color="C1", alpha=0.6)
        ax.set(xlabel="images reviewed", ylabel="annotator s per image (simulated)",
               title="annotator time (simulated)", ylim=(0, None))
        ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.4)  # room for the legend above the lines
        ax = axes[1]
        ax.plot(x, [r["held_out"]["routing"]["foundation_s_off"] for r in main], "s--", label="cascade alone")
        ax.plot(x, [max(r["held_out"]["routing"]["foundation_s_on"], 1e-1) for r in main], "o-",
                label="student first (routing)")
        ax.set_yscale("log")
        ax.set(xlabel="images reviewed", ylabel="foundation-model s per image",
               title="model seconds (cost.py estimate)")
        ax.legend(loc="lower left")
        save(fig, "loop-seconds.png")
    if results["comparison"]:
        fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=90)
        for strategy, rows in results["comparison"].items():
            xs = [r["reviewed"] for r in rows]
            ax.plot(xs, [r["ap50"]["mean"] for r in rows], "o-", label=f"{strategy} (mean of {rows[0]['seeds']} seeds)")
            ax.fill_between(xs, [r["ap50"]["min"] for r in rows], [r["ap50"]["max"] for r in rows], alpha=0.2)
        ax.set(xlabel="images reviewed", ylabel="held-out AP50", ylim=(0, 1), title="uncertainty-first vs random")
        ax.legend(loc="lower right")
        save(fig, "loop-selection.png")
    return out


def last_served(run_dir: Path, rows: list[dict]) -> tuple[Path, Path, object]:
    """(weights, last export, cascade thresholds) of a run's last served student."""
    from pipeline.config import Thresholds
    k = max(r["round"] for r in rows if r["promoted"])
    last = rows[-1]
    t = dict(last["cascade_thresholds"])  # rows are saved again by --sweep-only: read, never change them
    th = Thresholds(filter=t.pop("filter"), grounding=0.0, verify=0.5,
                    per_label={lab: {"verify": v} for lab, v in t.items()})
    return run_dir / f"round-{k}" / "weights" / "best.pt", run_dir / f"export-{last['round']}", th


def sweep_only(env: Env, out: Path) -> None:
    """The routing sweep added to results.json, or for a run not finished (or stopped) to sweep.json, which
    ``--report`` reads beside progress.json."""
    from pipeline.atomic import save_text
    results = load_results(env, out)
    # the run's own foundation-model seconds per call: its tables and this sweep priced alike
    env.seconds, env.cost_note = results.get("foundation_seconds", env.seconds), results.get("cost_note", env.cost_note)
    rows = results["main"]["rows"]
    weights, export, th = last_served(out / results["main"]["run"], rows)
    log(f"routing sweep for {weights} on {len(env.held)} held-out scenes ...")
    results["routing_sweep"] = sweep(env, weights, export, th)
    log(f"zoom refinement {', '.join(f'{z:g}' for z in ZOOMS)} for the same student ...")
    results["zoom_sweep"] = zoom_sweep(env, weights, export, th)
    log("each round's served student routed again with today's band ...")
    results["routing_by_round"] = reroute_rounds(env, out / results["main"]["run"], rows, th)
    if results.get("stopped"):
        save_text(out / SWEEP, json.dumps({"student": str(weights), "rows": results["routing_sweep"],
                                           "by_round": results["routing_by_round"],
                                           "zoom": results["zoom_sweep"]}, indent=1))
    else:
        save_text(out / "results.json", json.dumps(results, indent=1, default=str))
    print(f"\n### routing at other band settings (student {weights}, held-out set)\n")
    print_sweep(results["routing_sweep"])
    print(f"\n### zoom refinement (student {weights}, held-out set, --to-cascade {env.a.to_cascade}, max_uncertain "
          f"{env.a.max_uncertain})\n")
    print_zoom_sweep(results["zoom_sweep"])
    print(f"\n### each round's served student routed with today's band (--to-cascade {env.a.to_cascade}, "
          f"max_uncertain {env.a.max_uncertain}; the reviews stay the run's)\n")
    print(table(["round", "foundation s/img routed / cascade", "precision routed / cascade", "recall routed / cascade",
                 "to cascade", "annotator s/img on held-out, routed vs drawing", "same, the cascade's"],
                [[r["round"], f"{r['foundation_s_on']:.0f} / {r['foundation_s_off']:.0f} ({ratio(r)})",
                  f"{_f(r['precision_on'])} / {_f(r['precision_off'])}",
                  f"{r['recall_on']:.3f} / {r['recall_off']:.3f}", f"{r['to_cascade']:.0%}", _annotator(r),
                  _f((r.get("annotator") or {}).get("cascade_share"), "{:.0%}")]
                 for r in results["routing_by_round"]]))


def _annotator(r: dict) -> str:
    a = r.get("annotator")
    if not a or a["share"] is None:
        return "-"
    return f"{a['seconds_per_image']:.1f} / {a['scratch_per_image']:.1f} ({a['share']:.0%})"


def reroute_rounds(env: Env, run_dir: Path, rows: list[dict], th) -> list[dict]:
    """Each round's served student (the last promoted) with its band fitted again from the export it was promoted
    on, routed on the held-out set: the rounds' routing columns as calibrate --route fits the band now. What
    each round pre-annotated, and so its reviews, stay the run's."""
    out, held = [], None
    for row in rows:
        if row["promoted"]:  # otherwise the served student, and so what it measures, stays the last round's
            weights = run_dir / f"round-{row['round']}" / "weights" / "best.pt"
            served = Served(weights, Student(weights, env.a.zoom))
            served.band, _ = band_for(env, served, run_dir / f"export-{row['round']}")
            held = measure_held_out(env, served, th)
        out.append({"round": row["round"], **held["routing"], "annotator": held["annotator"]})
    return out


def main(argv=None) -> None:
    a = parse(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "false")  # no progress bars per epoch and per prediction
    os.environ.setdefault("YOLO_CONFIG_DIR", str(CACHE / "yolo-config"))
    import torch
    torch.set_num_threads(1)  # inference: two OpenMP threads stall whenever another process takes a core (2 cores)
    t_start, c_start = time.perf_counter(), cpu_seconds()
    a.command = "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:]))
    done = a.report or a.sweep_only
    if done:  # the settings the run in that folder had
        saved = settings_of(Path(done))
        saved["size"] = tuple(saved["size"])
        saved.setdefault("to_cascade", a.to_cascade)  # runs from before the floor's raise
        saved.setdefault("zoom", 0.0)  # runs from before the zoom refinement
        saved.setdefault("min_epochs", 1)  # ... and before --min-epochs
        a = argparse.Namespace(**{"command": a.command, **saved, "out": done, "plots": a.plots, "report": a.report,
                                  "sweep_only": a.sweep_only})
    env = world_env(a)
    if a.sweep_only:
        return sweep_only(env, Path(a.sweep_only))
    if a.report:
        return report(load_results(env, Path(a.report)), env)
    log(f"results in {env.out}")
    if a.store == "labelstudio":
        from pipeline.stack.ls_server import start_label_studio
        env.ls = start_label_studio(env.out / "label-studio", port=None)
    try:
        main_run = None if a.no_main else run_loop(env, "main-uncertain-s0", "uncertain", 0, a.rounds)
        runs = [main_run] if main_run else []
        for seed in a.seeds:
            first = None
            for strategy in ("uncertain", "random"):
                if seed == 0 and strategy == "uncertain" and main_run is not None:
                    first = main_run
                    continue
                r = run_loop(env, f"{strategy}-s{seed}", strategy, seed, a.compare_rounds,
                             start=first["round0"] if first else None)
                first = first or r
                runs.append(r)
    finally:
        if env.ls is not None:
            env.ls.stop()
    routing_sweep = zooms = None
    if main_run:
        weights, export, th = last_served(env.out / main_run["run"], main_run["rows"])
        routing_sweep = sweep(env, weights, export, th)
        zooms = zoom_sweep(env, weights, export, th)
    results = results_of(env, runs, main_run, routing_sweep, round(time.perf_counter() - t_start),
                         round(cpu_seconds() - c_start), zooms)
    (env.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report(results, env)


def report(results: dict, env: Env) -> None:
    """The configuration, the tables, the plots and the goals of a run's results."""
    a = env.a
    main_run = results["main"]
    if results.get("stopped"):
        print("\n(a run stopped midway: the rounds it finished, from its progress.json)")
    print_config("loop: configuration", {
        "command": a.command,
        "world": f"pipeline/synthetic, seed {a.world_seed}, {a.size[0]}x{a.size[1]}: {a.pool} to label, {a.held_out} "
                 f"held out; classes {', '.join(env.classes)}",
        "store": results["store"],
        "teacher (SIMULATED cascade)": ", ".join(f"{k} {v}" for k, v in env.teacher.to_dict().items()),
        "annotator (SIMULATED)": ", ".join(f"{k} {v} s" for k, v in env.costs.to_dict().items())
                                 + f"; also with drawing and fixing at {a.alt_draw} s; keeps a box as it is from "
                                 f"IoU {a.keep_iou}",
        "student": f"ultralytics YOLO from yolo11n.yaml (no download), imgsz {a.imgsz}, ~{a.passes} training images "
                   f"per round and at least {a.min_epochs} epochs, warm start from the served student; "
                   + (f"zoom refinement {a.zoom}" if a.zoom else "no zoom refinement"),
        "foundation-model seconds": env.cost_note,
        "results": str(env.out / "results.json"), **results["machine"]})
    if main_run:
        print(f"\n### the loop, seed 0, uncertainty-first selection, {a.per_round} tasks per round\n")
        print_main(main_run)
        if results["routing_sweep"]:
            print("\n### routing at other band settings (the last served student, held-out set)\n")
            print_sweep(results["routing_sweep"])
        if results.get("zoom_sweep"):
            print("\n### zoom refinement (the last served student, held-out set)\n")
            print_zoom_sweep(results["zoom_sweep"])
    if results["comparison"]:
        seeds = sorted({r["seed"] for r in results["runs"] if r["strategy"] == "random"})
        print(f"\n### selection: uncertainty-first vs random, same budget, seeds {seeds}\n")
        rows = []
        for strategy, rs in results["comparison"].items():
            for r in rs:
                rows.append([strategy, r["round"], r["reviewed"],
                             f"{r['ap50']['mean']:.3f} ({r['ap50']['min']:.3f}-{r['ap50']['max']:.3f})",
                             f"{r['ap50_95']['mean']:.3f} ({r['ap50_95']['min']:.3f}-{r['ap50_95']['max']:.3f})",
                             f"{r['annotator_s']:.1f}", _f(r.get("annotator_min_so_far"), "{:.1f}"),
                             " / ".join(f"{v:.3f}" for _, v in sorted(r.get("per_seed", {}).items()))])
        print(table(["strategy", "round", "reviewed", "held-out AP50 mean (min-max)", "AP50:95 mean (min-max)",
                     "annotator s/img", "annotator min so far", "AP50 per seed"], rows))
    if a.plots:
        for p in plot(results, Path(a.plots)):
            print(f"plot: {p}")
    if not main_run:
        return
    last = main_run["rows"][-1]
    rt = last["held_out"]["routing"]
    reached = next((r for r in main_run["rows"] if (r["held_out"]["ap50"] or 0) > 0.8), None)
    train_min = sum(r["train_wall_s"] for r in main_run["rows"]) / 60
    train_cpu = sum(r["train_cpu_s"] for r in main_run["rows"]) / 60
    print("\n### goals (main run)\n")
    print("- held-out AP50 > 0.8: " + (f"met at round {reached['round']} ({reached['reviewed']} images reviewed, "
                                        f"AP50 {reached['held_out']['ap50']:.3f})" if reached else "NOT met")
          + f"; training {train_min:.1f} min wall, {train_cpu:.1f} CPU-min in all")
    print(f"- annotator time, last round: {last['review']['share']:.0%} of drawing everything the classic way "
          f"(goal <= 30 %); {last['review']['alt']['share']:.0%} of drawing everything by extreme clicking")
    print(f"- routing, last round: {ratio(rt)} fewer foundation-model seconds per image "
          f"({rt['foundation_s_on']:.0f} vs {rt['foundation_s_off']:.0f}; goal >= 5x) at precision "
          f"{_f(rt['precision_on'])} routed vs {_f(rt['precision_off'])} cascade (target {a.target}), "
          f"recall {rt['recall_on']:.3f} vs {rt['recall_off']:.3f}")
    cpu = "-" if results["cpu_s"] is None else f"{results['cpu_s'] / 60:.0f}"
    print(f"- wall {results['wall_s'] / 60:.0f} min, CPU {cpu} min (this process and its children)")


if __name__ == "__main__":
    main()
