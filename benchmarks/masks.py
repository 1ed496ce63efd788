"""Masks at 1920x1080: SAM box-prompt decoding batched vs one box at a time, and the cost of putting
masks into Label Studio results, side by side in one run.

1. Mask cost per box. ``facebook/sam-vit-base``'s published shape (``SamConfig()`` defaults: ViT-B/16 at
   1024 px, 94 M params), random weights built from the config and loaded through ``SamSegmenter`` (the
   production path). One 1920x1080 image, N boxes; the image embedding is computed once and reused by
   both sides; then the boxes are decoded (mask decoder + upsampling to 1920x1080) in one batch vs one
   call per box, rounds alternating.
2. Label Studio output per task: N constructed object masks (ellipses of 1-8 % of the image) at
   1920x1080 -> BrushLabels (label-studio-sdk's RLE) and PolygonLabels (OpenCV outline, <= 100 points)
   results through the output layer, with their JSON payload size; COCO RLE for comparison.

    .venv/bin/python benchmarks/masks.py [--boxes 10] [--rounds 3]
    .venv/bin/python benchmarks/masks.py --quick     # tiny SAM, seconds (sanity only)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._common import built_once, fmt_s, log, machine, median, now, print_config, table  # noqa: E402

W, H = 1920, 1080


def sam_dir(shape: str) -> Path:
    from pipeline.tiny.sam import build_sam
    return built_once(f"sam-{shape}-random", f"SAM ({shape} shape, random weights)",
                      lambda out: build_sam(out, shape=shape))


def boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform([0, 0], [W * 0.8, H * 0.8], (n, 2))
    wh = rng.uniform([60, 60], [W * 0.3, H * 0.3], (n, 2))
    return np.column_stack([xy, np.minimum(xy + wh, [W, H])]).astype(np.float32)


def ellipses(n: int, seed: int = 0) -> np.ndarray:
    import cv2
    rng = np.random.default_rng(seed)
    out = np.zeros((n, H, W), np.uint8)
    for k in range(n):
        area = rng.uniform(0.01, 0.08) * W * H
        ax = float(np.sqrt(area / np.pi * rng.uniform(0.5, 2.0)))
        ay = area / np.pi / ax
        cv2.ellipse(out[k], (int(rng.uniform(ax, W - ax)), int(rng.uniform(ay, H - ay))), (int(ax), int(ay)),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return out.astype(bool)


def bench_sam(shape: str, n: int, rounds: int) -> dict:
    from PIL import Image

    from pipeline.providers.sam import SamSegmenter
    seg = SamSegmenter(str(sam_dir(shape)), device="cpu")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8))
    prompts = boxes(n)
    inputs = seg.processor(images=image, input_boxes=[prompts.tolist()], return_tensors="pt")
    t_embed = now()
    emb = seg._embedding(image, inputs["pixel_values"])
    t_embed = now() - t_embed
    seg.decode_boxes(emb, inputs, n)  # warm-up (allocations, kernels)
    times = {"batched": [], "single": []}
    for r in range(rounds):
        for side in (("batched", "single") if r % 2 == 0 else ("single", "batched")):
            t = now()
            masks = seg.decode_boxes(emb, inputs, n if side == "batched" else 1)
            times[side].append(now() - t)
            assert masks.shape == (n, H, W)
    params = sum(p.numel() for p in seg.model.parameters()) / 1e6
    return {"embed": t_embed, "batched": median(times["batched"]), "single": median(times["single"]),
            "params": params, "all": times}


def bench_output(n: int, rounds: int) -> list:
    from label_studio_sdk.label_interface import LabelInterface

    from pipeline.detections import Detections
    from pipeline.labelstudio import Layout
    masks = ellipses(n)
    from pipeline.detections import mask_box
    dets = Detections(xyxy=[mask_box(m) for m in masks], scores=np.full(n, 0.9), labels=["Stop Sign"] * n,
                      masks=masks)
    rows = []
    for tag in ("BrushLabels", "PolygonLabels", "RectangleLabels"):
        layout = Layout.from_config(LabelInterface(
            config=f'<View><Image name="image" value="$image"/><{tag} name="label" toName="image">'
                   f'<Label value="Stop Sign"/></{tag}></View>'))
        layout.results(dets, W, H)  # warm-up
        secs = []
        for _ in range(rounds):
            t = now()
            results, _ = layout.results(dets, W, H)
            secs.append(now() - t)
        payload = len(json.dumps(results))
        rows.append((tag, median(secs), payload, len(results)))
    t = now()
    coco = [dict(d) for d in dets.masks]
    coco_bytes = sum(len(c["counts"]) for c in coco)
    rows.append(("COCO RLE (kept in Detections)", (now() - t), coco_bytes, n))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny SAM (sanity only)")
    args = ap.parse_args()
    shape = "tiny" if args.quick else "base"
    print_config("configuration", {**machine(), "image": f"{W}x{H}", "boxes / masks per task": args.boxes,
                                   "rounds": args.rounds, "SAM shape": shape})
    log("SAM box prompts ...")
    s = bench_sam(shape, args.boxes, args.rounds)
    n = args.boxes
    print(f"\n## SAM box prompts ({shape} shape, {s['params']:.1f} M params, random weights), {n} boxes on {W}x{H}")
    print(f"image embedding, once per image: {fmt_s(s['embed'])} s")
    print(table(["decode (embedding reused)", "median s / image", "s / box", "ratio"], [
        ["one call per box", fmt_s(s["single"]), fmt_s(s["single"] / n), "1.00x"],
        [f"one batch of {n}", fmt_s(s["batched"]), fmt_s(s["batched"] / n),
         f"{s['single'] / s['batched']:.2f}x faster"],
    ]))
    whole_single = s["embed"] + s["single"]
    whole_batched = s["embed"] + s["batched"]
    print(f"per box with the embedding: {fmt_s(whole_single / n)} s (one by one) vs {fmt_s(whole_batched / n)} s "
          f"(batched): {whole_single / whole_batched:.2f}x")
    log("Label Studio results ...")
    rows = bench_output(n, args.rounds)
    print(f"\n## Label Studio results for one task: {n} object masks (1-8 % of the image each) at {W}x{H}")
    print(table(["output", "median s / task", "payload bytes / task", "regions"],
                [[tag, fmt_s(sec), f"{size:,}", k] for tag, sec, size, k in rows]))


if __name__ == "__main__":
    main()
