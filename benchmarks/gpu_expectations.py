"""Expected seconds per photo and stage on one NVIDIA L4 and one H100, from the FLOP counts of
``pipeline/cost.py`` and the GPUs' published bf16 dense tensor TFLOPS and memory bandwidth: the figures the
first GPU run has to meet (docs/gpu.md prints this table and says where each number comes from).

Per forward pass: seconds = max(FLOPs / (peak bf16 dense x ``--compute-efficiency``),
bytes of weights read / (bandwidth x ``--memory-efficiency``)) + a per-layer kernel-launch cost for eager
PyTorch. Prefill (a filter call, a verify batch, an OWLv2 pass, Falcon's image prefill) is compute-bound;
Falcon's decode steps are bound by reading its weights once per step (the 4 queries decode as one batch).
The stages and sizes are the defaults of projects/stop-signs.yaml (filter -> OWLv2 -> verify) and
projects/drones.yaml (filter -> Falcon, 4 queries -> verify), with Qwen2.5-VL-3B in-process as the VLM
(benchmarks/photo_cost.py's swap) and the GPU defaults (Falcon max_dimension 1024); verify = ``cost.BOXES``
crops of ``budgets.verify_pixels`` in one batched call.

    .venv/bin/python benchmarks/gpu_expectations.py
    .venv/bin/python benchmarks/gpu_expectations.py --compute-efficiency 0.3 --photo 1920x1080
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import table  # noqa: E402


@dataclass(frozen=True)
class Gpu:
    name: str
    bf16_dense_tflops: float  # tensor cores, dense (half the "with sparsity" datasheet figure)
    bandwidth_gbs: float
    memory_gb: float
    source: str


GPUS = (
    Gpu("L4", 121.0, 300.0, 24, "NVIDIA L4 datasheet: BF16 tensor 242 TFLOPS with sparsity, 300 GB/s GDDR6, 24 GB"),
    Gpu("H100 SXM", 989.0, 3350.0, 80, "NVIDIA H100 datasheet (SXM5): BF16 tensor 1,979 TFLOPS with sparsity, "
                                       "3.35 TB/s HBM3, 80 GB"),
)
COMPUTE_EFFICIENCY = 0.4  # share of dense bf16 peak a batch-1 prefill of ~1k tokens reaches in eager PyTorch + SDPA
MEMORY_EFFICIENCY = 0.7  # share of the datasheet bandwidth a weight-streaming pass reaches
LAUNCH_S_PER_LAYER = 1e-4  # eager PyTorch: ~10-15 kernels per transformer layer at ~5-10 us each
BYTES = 2  # bf16 weights
# data-label-factory's published Apple M4 figures (MLX), per image
M4_PUBLISHED = {"filter": 3.5, "ground (Falcon)": 11.0}

# Qwen/Qwen2.5-VL-3B-Instruct (benchmarks/_qwen.py holds the full shape)
QWEN_PARAMS = 3.755e9


def qwen_conf() -> dict:
    from benchmarks._qwen import QWEN25_VL_3B
    return {"text_config": {**QWEN25_VL_3B["text"]}, "vision_config": {**QWEN25_VL_3B["vision"]}}


def owlv2_shape() -> tuple[dict, dict]:
    """(vision, text) of google/owlv2-base-patch16-ensemble (pipeline/tiny/detectors.py's "base")."""
    from pipeline.tiny.detectors import OWLV2_SHAPES
    return OWLV2_SHAPES["base"]["vision"], OWLV2_SHAPES["base"]["text"]


def owlv2_params() -> float:
    """~12 h² per encoder layer (attention 4 h², MLP 2 x h x 4h), vision and text towers."""
    v, t = owlv2_shape()
    return 12 * v["num_hidden_layers"] * v["hidden_size"] ** 2 + 12 * t["num_hidden_layers"] * t["hidden_size"] ** 2


def falcon_shape():
    from falcon_perception import get_model_args
    return get_model_args("perception")


def falcon_params(a) -> float:
    q, kv = a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim
    per_layer = a.dim * (q + 2 * kv) + q * a.dim + 3 * a.dim * a.ffn_dim
    return a.n_layers * per_layer + 2 * a.vocab_size * a.dim


@dataclass
class Pass:
    """One forward (or ``repeat`` identical ones): FLOPs, weight bytes read, layers (for launch cost)."""
    flops: float
    weight_bytes: float
    layers: int
    repeat: int = 1

    def seconds(self, gpu: Gpu, ce: float, me: float) -> float:
        compute = self.flops / (gpu.bf16_dense_tflops * 1e12 * ce)
        memory = self.weight_bytes / (gpu.bandwidth_gbs * 1e9 * me)
        return self.repeat * (max(compute, memory) + self.layers * LAUNCH_S_PER_LAYER)


def stages(project: str, photo: tuple[int, int]) -> dict[str, list[Pass]]:
    """stage -> the forward passes it makes for one photo of ``photo`` size (module docstring)."""
    from pipeline import cost
    from pipeline.config import Budgets, GrounderProvider
    from pipeline.images import fit_size
    b = Budgets()
    qc = qwen_conf()
    qlayers = qc["text_config"]["num_hidden_layers"] + qc["vision_config"]["depth"]
    filt = cost.qwen_vl_flops(qc, cost.qwen_image_tokens(*fit_size(*photo, b.filter_pixels)))
    crop = cost.qwen_image_tokens(*fit_size(448, 448, b.verify_pixels))
    out = {"filter": [Pass(filt, QWEN_PARAMS * BYTES, qlayers)],
           "verify": [Pass(cost.BOXES * cost.qwen_vl_flops(qc, crop), QWEN_PARAMS * BYTES, qlayers)]}
    if project == "stop-signs":
        v, _ = owlv2_shape()
        out["ground"] = [Pass(cost.owlv2_flops({"vision_config": v}), owlv2_params() * BYTES, v["num_hidden_layers"])]
    else:
        a = falcon_shape()
        queries = 4
        one = cost.falcon_flops(GrounderProvider(model="tiiuae/Falcon-Perception"), photo, b.ground_pixels,
                                on_gpu=True, max_dim=1024)
        params = falcon_params(a)
        out["ground"] = [Pass(queries * one, params * BYTES, a.n_layers),  # the 4 queries' prefill (+ their decode
                         # FLOPs, counted in falcon_flops), then each decode step of the batch reads the weights once
                         Pass(queries * 2.0 * params, params * BYTES, a.n_layers, repeat=cost.FALCON_DECODE_STEPS)]
    return out


def rows_for(photo, ce: float, me: float) -> list[list]:
    rows = []
    for project in ("stop-signs", "drones"):
        per = stages(project, photo)
        totals = {g.name: 0.0 for g in GPUS}
        for stage, passes in per.items():
            flops = sum(p.flops * p.repeat for p in passes)
            secs = {g.name: sum(p.seconds(g, ce, me) for p in passes) for g in GPUS}
            for k, v in secs.items():
                totals[k] += v
            m4 = M4_PUBLISHED.get(stage if stage != "ground" or project == "stop-signs" else "ground (Falcon)")
            rows.append([project, stage, f"{flops / 1e12:.2f}", *[f"{secs[g.name]:.3f}" for g in GPUS],
                         f"~{m4:g}" if m4 else "-"])
        rows.append([project, "**total**", "", *[f"**{totals[g.name]:.2f}**" for g in GPUS], ""])
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", default="4032x3024", help="photo size (the budgets make larger ones cost the same)")
    ap.add_argument("--compute-efficiency", type=float, default=COMPUTE_EFFICIENCY)
    ap.add_argument("--memory-efficiency", type=float, default=MEMORY_EFFICIENCY)
    a = ap.parse_args(argv)
    photo = tuple(int(v) for v in a.photo.split("x"))
    print(f"photo {photo[0]}x{photo[1]}; compute efficiency {a.compute_efficiency:g} of dense bf16 peak, memory "
          f"efficiency {a.memory_efficiency:g} of bandwidth, {LAUNCH_S_PER_LAYER * 1e6:.0f} us launch cost per layer "
          "per pass; bf16 weights")
    for g in GPUS:
        print(f"- {g.name}: {g.bf16_dense_tflops:g} TFLOPS bf16 dense, {g.bandwidth_gbs:g} GB/s ({g.source})")
    print()
    print(table(["project", "stage", "TFLOP", *[f"{g.name} s" for g in GPUS], "M4 published s"],
                rows_for(photo, a.compute_efficiency, a.memory_efficiency)))


if __name__ == "__main__":
    main()
