"""Student detector vs foundation grounders on this CPU: seconds per image side by side, and training throughput.

    .venv/bin/python benchmarks/student_vs_foundation.py              # student + OWLv2-base (~5 min)
    .venv/bin/python benchmarks/student_vs_foundation.py --falcon     # + the Falcon Perception shape (MLX; slow)
    .venv/bin/python benchmarks/student_vs_foundation.py --quick      # tiny sizes, a sanity run

1. Training throughput: ``pipeline.distill.train`` (the code behind ``label-factory train``) trains the
   student from its architecture config (yolo11n.yaml, random initial weights: nothing downloaded) on a
   constructed YOLO export of 1920x1080 photos at imgsz 640 and reports images/s per epoch.
2. Inference, in one run with the calls interleaved: the trained student through the ``student`` grounder
   (ultralytics predict at 640 px) vs ``OWLv2Grounder`` with google/owlv2-base-patch16-ensemble's published
   shape (960x960 input, random weights) and, with ``--falcon``, ``FalconGrounder`` on MLX with Falcon
   Perception's published shape (ModelArgs defaults: dim 1024, 28 layers; random weights, images scaled to
   at most 1024 px as the package does; greedy decoding capped at ``--falcon-tokens`` because random
   weights never stop by themselves). Each grounder gets the full 1920x1080 RGB image and one query, as
   the ground stage calls it; preprocessing is inside the timing.

Inference runs with ``--threads`` torch threads on both sides (default 1: this machine's 2 cores are shared,
and two OpenMP threads stall whenever another process takes a core; measured 0.13-0.2 s vs 0.35-5.4 s per
student call under load). Training uses ultralytics' own CPU choice (cores - 1 threads, 2 loader workers).

Random weights: only speed means anything here (compute does not depend on weight values); no quality
figure is printed. Goal (issue 12): the student >= 20x faster than the foundation grounder."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import CACHE, fmt_s, log, machine, median, now, print_config, table  # noqa: E402

PHOTO = (1920, 1080)
CLASSES = ["Stop Sign", "Car"]


def photo(i: int, size=PHOTO):
    """A 1920x1080 'photo': smooth noise with a few filled boxes, and where they are (pixel xyxy)."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(i)
    w, h = size
    small = rng.integers(40, 200, (h // 8, w // 8, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(im)
    boxes = []
    for k in range(3):
        bw, bh = int(rng.integers(w // 12, w // 4)), int(rng.integers(h // 12, h // 4))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        label = CLASSES[k % 2]
        d.rectangle((x, y, x + bw - 1, y + bh - 1), fill=(220, 30, 30) if label == "Stop Sign" else (30, 30, 220))
        boxes.append((label, (x, y, x + bw, y + bh)))
    return im, boxes


def build_export(root: Path, n: int, size) -> Path:
    """A YOLO export of ``n`` constructed photos through the real exporter (write_dataset)."""
    import io

    from pipeline.distill.export import write_dataset
    from pipeline.distill.reviewed import Example
    from pipeline.images import open_image
    from pipeline.labelstudio.coords import xyxy_to_rect as xyxy_to_ls
    files, exs = {}, []
    for i in range(n):
        im, boxes = photo(i, size)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        files[f"/data/upload/1/{i}.jpg"] = buf.getvalue()
        regions = [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": size[0],
                    "original_height": size[1], "value": {**xyxy_to_ls(b, *size), "rectanglelabels": [lab]}}
                   for lab, b in boxes]
        exs.append(Example(i + 1, f"/data/upload/1/{i}.jpg", "annotation", i + 1, regions))
    out = root / "export"
    write_dataset(exs, out, "yolo", lambda url, task_id: open_image(files[url]), CLASSES,
                  ratios=(0.8, 0.2, 0.0), progress=False)
    return out


def falcon_grounder(max_new_tokens: int, tiny: bool):
    """FalconGrounder (MLX) with the published Falcon Perception shape and random weights; the tokenizer of
    pipeline/tiny/falcon.py (vocabulary size barely changes the compute: one output row per token id)."""
    from falcon_perception import ModelArgs, get_tokenizer
    from falcon_perception.mlx.model import FalconPerception

    from pipeline.providers.falcon import FalconGrounder
    from pipeline.tiny.falcon import TINY, build
    tok_dir = CACHE / "falcon-tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        build(tok_dir)
    tok = get_tokenizer(str(tok_dir))
    sizes = TINY if tiny else dict(perception_heads=True, do_segmentation=False)
    args = ModelArgs(**{**sizes, "vocab_size": tok._tok.get_vocab_size()})
    args.update(tok)
    model = FalconPerception(args)
    return FalconGrounder(model, tok, args, "mlx", model_id="falcon-perception shape (random)",
                          max_new_tokens=max_new_tokens)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny OWLv2, small photos, 1 epoch: a sanity run")
    ap.add_argument("--falcon", action="store_true", help="also the Falcon Perception shape on MLX (minutes/image)")
    ap.add_argument("--falcon-tokens", type=int, default=8, help="Falcon decoding cap (default 8: ~2 boxes)")
    ap.add_argument("--images", type=int, default=3, help="distinct photos for inference (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="passes over them (default 3)")
    ap.add_argument("--train-images", type=int, default=40, help="photos in the training export (default 40)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for inference, both sides (default 1: on a shared 2-core machine two "
                         "OpenMP threads stall whenever another process takes a core)")
    a = ap.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    size = (480, 270) if a.quick else PHOTO
    tmp = Path(tempfile.mkdtemp(prefix="lf-bench-student-"))
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp / "yolo-config"))
    t_start = now()

    from benchmarks.predict_overhead import owlv2_dir
    from pipeline.distill.train import TrainConfig, train
    from pipeline.providers.hf_detectors import OWLv2Grounder
    from pipeline.providers.student import StudentGrounder

    log(f"training the student (yolo11n.yaml, random init) on {a.train_images} photos {size[0]}x{size[1]} ...")
    data = build_export(tmp, 8 if a.quick else a.train_images, size)
    run = tmp / "run"
    m = train(TrainConfig(data=data, out=run, model="yolo11n.yaml", epochs=1 if a.quick else a.epochs,
                          imgsz=128 if a.quick else a.imgsz, batch=a.batch, device="cpu", workers=2, plots=False,
                          amp=False))
    epochs = m["epochs"]

    student = StudentGrounder(str(run / m["weights"]), device="cpu")
    owl = OWLv2Grounder(str(owlv2_dir("tiny" if a.quick else "base")), device="cpu")
    sides = {"student (YOLO11n, 640 px)": lambda im: student.boxes(im, ["stop sign"]),
             "OWLv2-base shape (960 px)": lambda im: owl.boxes(im, ["stop sign"])}
    if a.falcon:
        falcon = falcon_grounder(a.falcon_tokens, a.quick)
        sides[f"Falcon Perception shape (MLX, <= 1024 px, {a.falcon_tokens} tokens)"] = \
            lambda im: falcon.boxes(im, ["stop sign"])
    import torch
    torch.set_num_threads(a.threads)
    photos = [photo(100 + i, size)[0] for i in range(a.images)]
    log("warming up ...")
    for fn in sides.values():
        fn(photos[0])
    times = {k: [] for k in sides}
    names = list(sides)
    for rnd in range(a.rounds):
        for i, im in enumerate(photos):
            k = (rnd + i) % len(names)
            for name in names[k:] + names[:k]:  # rotate the order: drift hits every side alike
                t0 = now()
                sides[name](im)
                times[name].append(now() - t0)
        log(f"round {rnd + 1}/{a.rounds} done")

    print_config("student_vs_foundation: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "input": f"{a.images} RGB photos {size[0]}x{size[1]}, {a.rounds} rounds, order rotated per call, 1 query",
        "student": f"ultralytics YOLO11n from yolo11n.yaml ({len(CLASSES)} classes), trained {len(epochs)} epoch(s) "
                   "here, served by the student grounder (predict at 640 px, conf >= 0.001)",
        "OWLv2": "google/owlv2-base-patch16-ensemble shape, random weights, 960x960" if not a.quick else "tiny OWLv2",
        **machine(),
    })
    base = median(times[names[0]])
    rows = []
    for name in names:
        md = median(times[name])
        rows.append([name, len(times[name]), fmt_s(md), f"{1 / md:.2f}", "1.0x" if name == names[0]
                     else f"{md / base:.0f}x slower"])
    print("\n### inference, seconds per image\n")
    print(table(["grounder", "calls", "median s/image", "images/s", "vs student"], rows))
    print("\n### training throughput (label-factory train, CPU)\n")
    print(table(["epoch", "train images", "seconds", "images/s"],
                [[e["epoch"], e["images"], f"{e['seconds']:.1f}", f"{e['images_per_s']:.2f}"] for e in epochs]))
    owl_ratio = median(times[names[1]]) / base
    print(f"\nstudent vs OWLv2-base: {owl_ratio:.0f}x faster (goal >= 20x: {'met' if owl_ratio >= 20 else 'NOT met'}); "
          f"train: imgsz {128 if a.quick else a.imgsz}, batch {a.batch}, 2 data-loader workers; "
          f"wall time {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
