"""The answer cache (pipeline/answer_cache.py): what a re-run of the same images costs with it, and what it
costs to have it on a first run, side by side in one process run.

* key cost: the pixel digest of an image at real photo sizes (12 MP camera photo, 1080p frame, a 1 MP
  grounder view, a verify crop) and SQLite lookups of 8 answers in a store holding 50,000;
* filter + ground on real-size photos (1920x1080 and 4000x3000): the filter on the tiny Qwen2.5-VL (random
  weights, pipeline/tiny/qwen.py), ground on OWLv2 with google/owlv2-base-patch16-ensemble's published shape
  (random weights, 960x960 input); per image, in this order: the cache off, the cache on and empty (every
  answer asked and stored), the cache on again (every answer reused). Verify is off: random OWLv2 weights
  propose slivers whose crops Qwen2.5-VL's processor refuses (aspect ratio > 200).

    .venv/bin/python benchmarks/answer_cache.py [--images 3]

Random weights: only time is measured, never what the boxes are."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import CACHE, fmt_s, log, machine, median, now, print_config, table  # noqa: E402


def photo(width: int, height: int, seed: int):
    """A photo-like image: smooth gradients plus sensor-like noise (the digest reads every byte anyway)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200, y / height * 180, (x + y) / (width + height) * 160], axis=-1)
    noise = rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(base + noise + 30, 0, 255).astype(np.uint8))


def digest_rows():
    from pipeline.images import pixels_digest
    rows = []
    for name, (w, h) in {"12 MP photo 4000x3000": (4000, 3000), "1080p frame 1920x1080": (1920, 1080),
                         "grounder view 1024x1024": (1024, 1024), "verify crop 448x448": (448, 448)}.items():
        im = photo(w, h, 0)
        times = []
        for _ in range(5):
            t = now()
            pixels_digest(im)
            times.append(now() - t)
        rows.append([name, f"{1000 * median(times):.1f} ms"])
    return rows


def store_rows(tmp: Path):
    from pipeline.answer_cache import AnswerStore
    st = AnswerStore(tmp / "answers.db", max_bytes=10**9)
    keys = [os.urandom(32) for _ in range(50_000)]
    for i in range(0, len(keys), 500):
        st.put_many([(k, "vlm", os.urandom(120)) for k in keys[i:i + 500]])
    gets, puts = [], []
    for i in range(200):
        batch = keys[i * 8:(i + 1) * 8]
        t = now()
        assert len(st.get_many(batch)) == 8
        gets.append(now() - t)
        t = now()
        st.put_many([(os.urandom(32), "vlm", os.urandom(120)) for _ in range(8)])
        puts.append(now() - t)
    return [["get 8 answers (hits), 50,000 stored", f"{1000 * median(gets):.2f} ms"],
            ["put 8 answers (one transaction)", f"{1000 * median(puts):.2f} ms"]]


def cascade_rows(n: int, tmp: Path):
    from benchmarks.predict_overhead import owlv2_dir
    from pipeline.cascade import Pipeline
    from pipeline.config import parse_project
    from pipeline.tiny.qwen import build as build_qwen
    qwen = CACHE / "qwen2.5-vl-tiny-answer-cache"
    if not (qwen / "config.json").exists():
        build_qwen(qwen)
    cfg = parse_project({"project_name": "bench", "target_object": "stop sign",
                         "stages": {"filter": True, "ground": True, "verify": False},
                         "thresholds": {"filter": 0.0, "grounding": 0.0, "verify": 0.0, "max_boxes": 8},
                         "providers": {"vlm": {"kind": "transformers", "model": str(qwen), "device": "cpu"},
                                       "grounder": {"kind": "owlv2", "model": str(owlv2_dir("base")),
                                                    "device": "cpu"}}})
    os.environ["MODEL_DIR"] = str(tmp / "model-dir")
    images = [photo(1920, 1080, s) for s in range(max(1, n - 1))] + [photo(4000, 3000, 99)]
    Pipeline(cfg).load().run(photo(640, 480, 7))  # warm-up: first-call costs out of the figures
    rows, totals = [], {"off": [], "cold": [], "warm": []}
    for i, im in enumerate(images):
        t = {}
        for mode in ("off", "cold", "warm"):
            os.environ["LF_ANSWER_CACHE"] = "0" if mode == "off" else "1"
            pipe = Pipeline(cfg)
            start = now()
            pipe.run(im)
            t[mode] = now() - start
            totals[mode].append(t[mode])
            if mode == "warm":
                assert pipe.cache_counts()["misses"] == 0, pipe.cache_counts()
        rows.append([f"{im.width}x{im.height} #{i}", fmt_s(t["off"]), fmt_s(t["cold"]), fmt_s(t["warm"]),
                     f"{t['cold'] / t['off']:.3f}", f"{t['off'] / t['warm']:.0f}x"])
    rows.append(["median", fmt_s(median(totals["off"])), fmt_s(median(totals["cold"])),
                 fmt_s(median(totals["warm"])), f"{median(totals['cold']) / median(totals['off']):.3f}",
                 f"{median(totals['off']) / median(totals['warm']):.0f}x"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=3, help="photos in the cascade part (the last one 12 MP)")
    args = ap.parse_args()
    print_config("answer cache benchmark", {**machine(), "images": args.images})
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log("pixel digests ...")
        print("\n### What a key costs\n")
        print(table(["image", "pixel digest (median of 5)"], digest_rows()))
        log("SQLite store ...")
        print("\n" + table(["store operation", "median of 200"], store_rows(tmp)))
        log("filter + ground (tiny Qwen2.5-VL + OWLv2-base shape) ...")
        print("\n### Filter + ground on the same photo: cache off, on and empty, on and full (seconds)\n")
        print(table(["photo", "off", "on, empty", "on, full", "empty / off", "off / full"],
                    cascade_rows(args.images, tmp)))


if __name__ == "__main__":
    main()
