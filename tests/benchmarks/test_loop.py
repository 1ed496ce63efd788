"""benchmarks/loop.py's own parts: the in-process store's export, and a stopped run's rounds read back."""
import json
from types import SimpleNamespace

import numpy as np

from benchmarks import loop
from pipeline.distill.promote import held_out
from pipeline.importer.manifest import Manifest
from pipeline.synthetic.project import annotation, read_truth, truth_detections, write_world
from pipeline.synthetic.world import World


def test_memory_store_exports_every_reviewed_box(tmp_path):
    world = World(3, size=(320, 240))
    write_world(world, range(10), tmp_path / "pool")
    pool = read_truth(tmp_path / "pool")
    paths = {e["id"]: tmp_path / "pool" / e["path"] for e in Manifest.load(tmp_path / "pool")}
    store = loop.MemoryStore(SimpleNamespace(pool=pool, paths=paths, classes=world.classes), "t")
    for entry, rec in pool.items():
        store.annotate(entry, annotation(truth_detections(rec), rec["width"], rec["height"], 1.0))
    manifest = store.export(tmp_path / "export")
    assert sum(manifest["counts"][s]["images"] for s in ("train", "val", "test")) == len(pool)
    exported = {}
    for split in ("train", "val", "test"):
        h = held_out(tmp_path / "export", split)
        for image, truth in zip(h.images, h.truth):
            exported[image.stem] = truth
    assert len(exported) == len(pool)
    want = sorted((lab, *np.round(b).astype(int)) for rec in pool.values()
                  for lab, b in zip(rec["labels"], np.reshape(rec["boxes"], (-1, 4))))
    got = sorted((lab, *np.round(b).astype(int)) for t in exported.values() for lab, b in zip(t.labels, t.xyxy))
    assert len(got) == len(want) > 0
    assert np.abs(np.array([g[1:] for g in got]) - np.array([w[1:] for w in want])).max() <= 1
    assert [g[0] for g in got] == [w[0] for w in want]


def _row(r, ap50):
    return {"round": r, "reviewed": 10 * (r + 1), "round_s": 60.0, "held_out": {"ap50": ap50, "ap50_95": ap50 / 2},
            "review": {"seconds_per_image": 5.0}}


def test_a_stopped_run_keeps_its_rounds_and_compares_only_seeds_both_strategies_ran(tmp_path):
    a = SimpleNamespace(no_main=False, seeds=[0, 1], compare_rounds=3, size=(320, 240))
    env = SimpleNamespace(a=a, out=tmp_path, seconds={}, cost_note="", teacher=SimpleNamespace(to_dict=dict),
                          costs=SimpleNamespace(to_dict=dict))
    runs = [("main-uncertain-s0", "uncertain", 0, [0.5, 0.6, 0.7, 0.75]), ("random-s0", "random", 0, [0.5, 0.55]),
            ("uncertain-s1", "uncertain", 1, [0.4, 0.5])]  # seed 1 stopped before its random run
    for name, strategy, seed, aps in runs:
        loop.save_progress(env, {"run": name, "strategy": strategy, "seed": seed, "store": "memory",
                                 "rows": [_row(r, ap) for r, ap in enumerate(aps)]})
    saved = json.loads((tmp_path / loop.PROGRESS).read_text())
    assert set(saved["runs"]) == {name for name, *_ in runs}
    assert loop.load_results(env, tmp_path)["zoom_sweep"] is None  # no --sweep-only yet
    (tmp_path / loop.SWEEP).write_text(json.dumps({"rows": [{"to_cascade_max": 0.1}], "zoom": [{"zoom": 4.0}]}))
    results = loop.load_results(env, tmp_path)
    assert results["routing_sweep"] == [{"to_cascade_max": 0.1}] and results["zoom_sweep"] == [{"zoom": 4.0}]
    assert results["stopped"] and [r["held_out"]["ap50"] for r in results["main"]["rows"]] == [0.5, 0.6, 0.7, 0.75]
    cmp = results["comparison"]
    assert set(cmp) == {"uncertain", "random"}
    assert [r["ap50"]["mean"] for r in cmp["uncertain"]] == [0.5, 0.6]  # cut to the rounds random finished
    assert all(r["seeds"] == 1 for rs in cmp.values() for r in rs)  # seed 1 has no random run: left out


def test_the_last_served_student_is_read_without_changing_the_rows(tmp_path):
    """--sweep-only saves results.json again with the rows it read: reading the cascade thresholds once dropped
    the last row's filter threshold, and a second --sweep-only then failed with KeyError: 'filter'."""
    rows = [{"round": 0, "promoted": True, "cascade_thresholds": {"filter": 0.6, "Drone": 0.7}},
            {"round": 1, "promoted": False, "cascade_thresholds": {"filter": 0.6, "Drone": 0.7}}]
    for _ in range(2):
        weights, export, th = loop.last_served(tmp_path, rows)
        assert weights == tmp_path / "round-0" / "weights" / "best.pt" and export == tmp_path / "export-1"
        assert th.filter == 0.6 and th.verify_for("Drone") == 0.7
    assert rows[1]["cascade_thresholds"] == {"filter": 0.6, "Drone": 0.7}


def test_annotator_minutes_count_each_rounds_own_images():
    rows = [{"reviewed": 40, "review": {"seconds_per_image": 10.0}},
            {"reviewed": 80, "review": {"seconds_per_image": 30.0}}]
    assert loop._annotator_minutes(rows) == (40 * 10 + 40 * 30) / 60
    assert loop._annotator_minutes(rows[:1]) == 40 * 10 / 60
