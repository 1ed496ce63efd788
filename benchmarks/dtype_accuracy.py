"""How far reduced precision (bf16, fp16) moves the outputs of each real-shape model from fp32, on the same
inputs, in one run: the accuracy guard of ``dtype: auto``.

RANDOM weights (the published architecture shapes, built once under ~/.cache/label-factory-bench): these
figures say how much this architecture's arithmetic in bf16/fp16 moves its outputs, never how good a label
is. A trained model's outputs are usually less sensitive than a random one's (confident logits, boxes
regressed towards objects): read them as an upper bound on the drift, not as quality.

* Qwen2.5-VL-3B-Instruct shape (``TransformersVLM``, the verify/filter YES/NO path): P(yes) on N photo-like
  crops; max and mean |Δ| against fp32, with the fp32 P(yes) range (a P(yes) stuck at 0 or 1 would hide a
  drift). Its weights are stored in bf16 (as Qwen's own checkpoints are), so fp32 vs bf16 here is the
  arithmetic alone.
* OWLv2 (google/owlv2-base-patch16-ensemble shape, 960 px) on a 1920x1080 photo's ground view, 3 queries:
  every one of its 3,600 proposals compared with the same proposal in fp32 (box IoU, |Δ score|), and the
  top-k boxes of each side matched one-to-one (Hungarian on IoU): matched-box IoU.
* Falcon-Perception 0.6B shape at max_dimension 512, drones' 4 queries, K objects per query: generation is
  steered to emit <coord>/<size> pairs (``falcon_cpu.ScriptedTokens``; the boxes are the model's own heads'
  outputs), each query's boxes matched one-to-one with fp32's (Hungarian on IoU). A coordinate is an argmax
  over 2,048 bins and each box conditions the next, so one flipped bin can move a later box far.
* SAM (facebook/sam-vit-base shape) at 1920x1080, N box prompts: mask IoU per box against fp32.

fp16 runs only where it can (``--dtypes``): on a CPU without AVX512-FP16/AMX-FP16 torch's fp16 matmul is
~100x slower than fp32 (the matmul probe says so at the start), so the default on a CPU is bf16 alone.
Seconds per call are printed for each dtype too (sides alternate, except the 3B VLM, whose fp32 copy and bf16
copy do not both fit in memory: loaded and run one after the other).

    .venv/bin/python benchmarks/dtype_accuracy.py                       # all four models, bf16 vs fp32
    .venv/bin/python benchmarks/dtype_accuracy.py --models owlv2,sam --dtypes bf16,fp16
    .venv/bin/python benchmarks/dtype_accuracy.py --device cuda --dtypes bf16,fp16
    .venv/bin/python benchmarks/dtype_accuracy.py --quick               # tiny models (smoke)
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._common import fmt_s, interleaved, log, now, peak_rss_mib, table  # noqa: E402

MODELS = ("owlv2", "falcon", "sam", "qwen")
W, H = 1920, 1080
OWL_QUERIES = ["stop sign", "car", "traffic light"]
FALCON_QUERIES = ["fiber-optic drone", "drone with a cable spool", "FPV drone", "cable spool"]
QUESTION = "Is this a stop sign? Answer YES or NO."


def photo(size=(W, H), seed: int = 0):
    """A photo-like RGB image (smooth noise; compute and precision effects do not need content)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, size[1] // 16), max(1, size[0] // 16), 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BILINEAR)


def matched_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each one-to-one pair of boxes of ``a`` and ``b`` (xyxy) that maximises total IoU (Hungarian);
    a box left without a partner counts as IoU 0."""
    import supervision as sv
    from scipy.optimize import linear_sum_assignment
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    n = max(len(a), len(b))
    if not n:
        return np.zeros(0)
    if not len(a) or not len(b):
        return np.zeros(n)
    iou = sv.box_iou_batch(a, b)
    rows, cols = linear_sum_assignment(-iou)
    return np.concatenate([iou[rows, cols], np.zeros(n - len(rows))])


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box i of ``a`` with box i of ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(1)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 1.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-mask IoU of (N, H, W) bool masks, over the masks not empty on both sides; and how many were."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    inter, union = (a & b).sum(1), (a | b).sum(1)
    keep = union > 0
    return inter[keep] / union[keep], int((~keep).sum())


def outputs_and_seconds(calls: dict, rounds: int, device: str) -> tuple[dict, dict]:
    """Each side's first output (the one compared), then ``rounds`` more calls per side, alternating; the
    seconds are those calls' medians, or the first calls' own with ``rounds`` 0 (first-call costs included)."""
    from pipeline.hardware import synchronize
    out, first = {}, {}
    for k, fn in calls.items():
        synchronize(device)
        t = now()
        out[k] = fn()
        synchronize(device)
        first[k] = now() - t
    return out, (interleaved(calls, rounds, device, warmup=False) if rounds else first)


def result(model: str, dtype: str, inputs: str, drift: str, secs: dict) -> list:
    return [model, dtype, inputs, drift, fmt_s(secs["fp32"]), fmt_s(secs[dtype]), f"{secs['fp32'] / secs[dtype]:.2f}x"]


# -- per model ---------------------------------------------------------------------------------------------
def bench_owlv2(path: str, dtypes: list[str], device: str, rounds: int, topk: int, quick: bool) -> list[list]:
    from scipy.stats import spearmanr

    from pipeline.images import Photo
    from pipeline.providers.hf_detectors import OWLv2Grounder
    view = Photo.of(photo()).view(1024 * 1024).image  # what the ground stage gives it (budgets.ground_pixels)
    sides = {d: OWLv2Grounder(path, device=device, dtype=d) for d in ["fp32", *dtypes]}
    out, secs = outputs_and_seconds({d: (lambda g=g: g._detect(view, OWL_QUERIES)) for d, g in sides.items()},
                                    rounds, device)
    ref_xyxy, ref_s, _ = out["fp32"]
    rows = []
    for d in dtypes:
        xyxy, s, _ = out[d]
        per = pairwise_iou(ref_xyxy, xyxy)
        top_ref, top = np.argsort(-ref_s)[:topk], np.argsort(-s)[:topk]
        m = matched_iou(ref_xyxy[top_ref], xyxy[top])
        rho = spearmanr(ref_s, s)[0]
        rows.append(result(f"OWLv2-{'tiny' if quick else 'base'} @960", d,
                           f"{len(per)} proposals: box IoU with the same proposal median {np.median(per):.4f}, "
                           f"5th pct {np.percentile(per, 5):.4f}, min over fp32's top-{topk} "
                           f"{per[top_ref].min():.4f}",
                           f"scores: |Δ| median {np.median(np.abs(ref_s - s)):.2e}, max {np.abs(ref_s - s).max():.2f}, "
                           f"rank correlation {rho:.3f}, fp32 scores > 0.99: {(ref_s > 0.99).mean() * 100:.0f} %; "
                           f"top-{topk} of each side matched: IoU mean {m.mean():.4f}, min {m.min():.4f}; "
                           f"{len(set(top_ref) & set(top))}/{topk} same proposals", secs))
    return rows


def bench_falcon(path: str, dtypes: list[str], device: str, rounds: int, objects: int, quick: bool) -> list[list]:
    from benchmarks.falcon_cpu import ScriptedTokens
    from pipeline.config import GrounderProvider
    from pipeline.images import Photo
    from pipeline.providers.falcon import FalconGrounder
    view = Photo.of(photo()).view(1024 * 1024).image
    sides = {}
    for d in ["fp32", *dtypes]:
        sides[d] = FalconGrounder.from_config(GrounderProvider(model=path, backend="torch", device=device, dtype=d,
                                                               max_new_tokens=2 * objects + 1, max_dimension=512))
        ScriptedTokens.install(sides[d], 2 * objects + 1)
    out, secs = outputs_and_seconds({d: (lambda g=g: g.boxes(view, FALCON_QUERIES)) for d, g in sides.items()},
                                    rounds, device)
    ref = out["fp32"]
    rows = []
    for d in dtypes:
        ious = np.concatenate([matched_iou(ref.xyxy[ref.queries == q], out[d].xyxy[out[d].queries == q])
                               for q in FALCON_QUERIES])
        firsts = [matched_iou(ref.xyxy[ref.queries == q][:1], out[d].xyxy[out[d].queries == q][:1])
                  for q in FALCON_QUERIES]
        rows.append(result(f"Falcon-Perception {'tiny' if quick else '0.6B'} @512", d,
                           f"{len(ref)} vs {len(out[d])} boxes ({len(FALCON_QUERIES)} queries x {objects} objects)",
                           f"matched IoU mean {ious.mean():.4f}, min {ious.min():.4f}; first box of each query: "
                           f"mean {np.concatenate(firsts).mean():.4f}; {int((ious >= 0.95).sum())}/{len(ious)} "
                           ">= 0.95", secs))
    return rows


def bench_sam(path: str, dtypes: list[str], device: str, rounds: int, n: int, quick: bool) -> list[list]:
    from benchmarks.masks import boxes
    from pipeline.providers.sam import SamSegmenter
    image, prompts = photo(seed=1), boxes(n)
    sides = {d: SamSegmenter(path, device=device, dtype=d, cache_images=0) for d in ["fp32", *dtypes]}
    out, secs = outputs_and_seconds({d: (lambda s=s: s.masks_for_boxes(image, prompts)) for d, s in sides.items()},
                                    rounds, device)
    rows = []
    for d in dtypes:
        iou, empty = mask_iou(out["fp32"], out[d])
        rows.append(result(f"SAM-{'tiny' if quick else 'base'}", d, f"{n} box prompts on {W}x{H}; fp32 mask area "
                           f"median {np.median(out['fp32'].reshape(n, -1).mean(1)) * 100:.1f} % of the image",
                           (f"mask IoU mean {iou.mean():.4f}, min {iou.min():.4f}" if len(iou) else "all masks empty")
                           + (f"; {empty} empty on both sides" if empty else ""), secs))
    return rows


def bench_qwen(path: str, dtypes: list[str], device: str, n: int, crop: int, quick: bool) -> list[list]:
    """One dtype loaded at a time (the 3B in fp32 and in bf16 do not both fit in 24 GiB)."""
    from pipeline.hardware import synchronize
    from pipeline.providers.transformers_vlm import TransformersVLM
    crops = [photo((crop, crop), seed=10 + i) for i in range(n)]
    p, secs, tokens = {}, {}, 0
    for d in ["fp32", *dtypes]:
        log(f"  qwen: loading in {d}")
        vlm = TransformersVLM(path, device=device, max_batch=n, dtype=d)
        tokens = int((vlm._inputs(crops[:1], QUESTION)["input_ids"] == vlm.model.config.image_token_id).sum())
        vlm.yes_probabilities(crops[:1], QUESTION)  # warm-up
        synchronize(device)
        t = now()
        p[d] = np.array([a.p_yes for a in vlm.yes_probabilities(crops, QUESTION)])
        synchronize(device)
        secs[d] = now() - t
        del vlm
        gc.collect()
    rows = []
    for d in dtypes:
        delta = np.abs(p[d] - p["fp32"])
        rows.append(result(f"Qwen2.5-VL {'tiny' if quick else '3B'} (YES/NO)", d,
                           f"{n} crops {crop}x{crop} ({tokens} image tokens each), one batched call; fp32 P(yes) "
                           f"{p['fp32'].min():.3f}..{p['fp32'].max():.3f}",
                           f"P(yes) max |Δ| {delta.max():.4f}, mean {delta.mean():.4f}", secs))
    return rows


def paths(quick: bool) -> dict:
    from benchmarks.photo_cost import model_paths
    return model_paths(quick)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--dtypes", default=None, help="reduced dtypes compared with fp32 (default: bf16 on a CPU, "
                                                   "bf16,fp16 on CUDA)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=2,
                    help="timed calls per side after the first, whose outputs are compared (0: time the first)")
    ap.add_argument("--crops", type=int, default=8, help="Qwen: crops (one batched call)")
    ap.add_argument("--crop-size", type=int, default=224, help="Qwen: crop side in px (224: 64 image tokens)")
    ap.add_argument("--topk", type=int, default=10, help="OWLv2: top boxes matched per side")
    ap.add_argument("--objects", type=int, default=3, help="Falcon: objects emitted per query")
    ap.add_argument("--boxes", type=int, default=10, help="SAM: box prompts")
    ap.add_argument("--quick", action="store_true", help="tiny models (smoke)")
    a = ap.parse_args(argv)
    dtypes = (a.dtypes or ("bf16,fp16" if a.device.startswith("cuda") else "bf16")).split(",")
    models = a.models.split(",")
    import torch

    from benchmarks.photo_cost import cpu_line, uptime
    from pipeline.hardware import matmul_rates
    t_start, load0 = now(), uptime()
    if a.quick:
        import falcon_perception

        from pipeline.tiny.falcon import tiny_model_args
    p = paths(a.quick)
    if a.quick:
        falcon_perception.get_model_args = lambda variant: tiny_model_args(p["falcon"])
    rates = matmul_rates("cuda" if a.device.startswith("cuda") else "cpu", ("fp32", *dtypes))
    rows = []
    for m in models:
        log(f"{m} ...")
        if m == "owlv2":
            rows += bench_owlv2(p["owlv2"], dtypes, a.device, a.rounds, a.topk, a.quick)
        elif m == "falcon":
            rows += bench_falcon(p["falcon"], dtypes, a.device, a.rounds, a.objects, a.quick)
        elif m == "sam":
            rows += bench_sam(p["sam"], dtypes, a.device, a.rounds, a.boxes, a.quick)
        elif m == "qwen":
            rows += bench_qwen(p["vlm"], dtypes, a.device, a.crops, a.crop_size, a.quick)
        else:
            raise SystemExit(f"unknown model {m!r}: {', '.join(MODELS)}")
        log("  " + " | ".join(rows[-1]))  # as it comes: a long run that dies keeps what it measured
        gc.collect()
    print("\n## dtype_accuracy: configuration")
    print(f"- command: python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}")
    print(f"- CPU: {cpu_line()}")
    print(f"- torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}; matmul probe "
          + ", ".join(f"{d} {r:.1f}" for d, r in rates.items()) + " GFLOP/s (1024³)")
    print(f"- models: {'tiny test models (smoke only)' if a.quick else 'published shapes'}, RANDOM weights: "
          "drift of this architecture's outputs under reduced precision, not label quality")
    first = "; its seconds are the ones shown, first-call costs included" if not a.rounds else ""
    print(f"- timing: {a.rounds or 'no'} calls per side after the first (the compared outputs{first}), sides "
          "alternating "
          "(Qwen: one batched call per "
          f"dtype, loaded one after the other); load (uptime) before / after: {load0} / {uptime()}")
    print("\n" + table(["model", "dtype", "inputs", "drift vs fp32", "fp32 s/call", "dtype s/call",
                        "speed vs fp32"], rows))
    print(f"\npeak RSS: {peak_rss_mib() / 1024:.1f} GiB; wall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("LF_ANSWER_CACHE", "0")
    main()
