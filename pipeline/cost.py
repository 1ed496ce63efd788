"""Expected seconds per image for a project on this machine, from its config alone: said at start-up.

Each stage's work is counted in FLOPs from the model's shape (its config.json, or the Falcon package's own
size table) and the tokens the budgets let through, then divided by this machine's measured matmul speed in
the dtype that stage's model runs in (``pipeline.hardware``: a probe of a few hundred milliseconds, best of
alternating rounds, so a busy moment does not read as a slow machine) times the share of it real models
reach (``EFFICIENCY``, calibrated with benchmarks/photo_cost.py).  Its job is to say "this will take minutes
per image" before ``up``, ``predict`` or the backend start, not after.

It must not load weights or touch the network: a model whose shape cannot be read from disk is reported as
not estimated, and so is a model behind a remote server; what the first real images took (``observe``) is
logged beside the estimate once a few have run, so a server VLM gets a measured figure too.
"""
from __future__ import annotations

import json
import logging
import math
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pipeline.config import QWEN_PATCH_PIXELS, ProjectConfig
from pipeline.images import fit_size

log = logging.getLogger(__name__)

SLOW_SECONDS = 60.0  # per image: above this the start-up message is a warning
# Share of the matmul probe's GFLOP/s that whole models reach (attention, norms, copies). Calibrated with
# benchmarks/photo_cost.py in fp32 on a 2-core AVX-512 CPU without bf16: stop-signs' cascade (Qwen2.5-VL-3B
# filter + OWLv2 + 3 verify crops) at 1920x1080 took 1/0.94 of the estimate, i.e. 0.47 (filter 0.52, OWLv2
# 0.64, verify 0.41). bf16 and fp16 are not calibrated where they are chosen (an AMX CPU, a GPU): same value.
EFFICIENCY = 0.5
OBSERVE_AFTER = 3  # images whose measured stage seconds are logged beside the estimate
REFERENCE_PHOTO = (4032, 3024)  # a 12 MP phone photo: larger ones cost the same (budgets)
BOXES = 3  # verify crops assumed per image
FALCON_DECODE_STEPS = 8  # tokens a real Falcon emits per query for a few objects (coord, size, ..., end)
PROMPT_TOKENS = 30  # chat template + question

def matmul_gflops(device: str = "cpu", dtype: str = "fp32") -> float:
    """GFLOP/s of a 1024³ matmul in ``dtype`` on ``device`` (``pipeline.hardware.matmul_rates``: measured once
    per process, for a few hundred milliseconds)."""
    from pipeline.hardware import matmul_rates
    return matmul_rates(device, (dtype,))[dtype]


@dataclass
class StageCost:
    stage: str
    seconds: Optional[float]  # None: not estimated (see note)
    note: str
    per: str = "image"  # "image" or "box"


@dataclass
class Estimate:
    device: str
    rates: dict  # dtype -> GFLOP/s measured (or given) for the dtypes the stages run in
    stages: list[StageCost] = field(default_factory=list)
    boxes: int = BOXES

    @property
    def known(self) -> bool:
        return all(s.seconds is not None for s in self.stages)

    @property
    def per_image(self) -> float:
        """Seconds for one image that passes the filter with ``boxes`` boxes (unknown stages count 0)."""
        return sum((s.seconds or 0.0) * (self.boxes if s.per == "box" else 1) for s in self.stages)

    @property
    def slow(self) -> bool:
        return self.per_image >= SLOW_SECONDS

    def summary(self) -> str:
        parts = []
        for s in self.stages:
            when = "not estimated" if s.seconds is None else f"~{_fmt(s.seconds)}{' per box' if s.per == 'box' else ''}"
            parts.append(f"{s.stage} {when} ({s.note})")
        if not any(s.seconds is not None for s in self.stages):
            return "expected time per image: not estimated: " + "; ".join(parts)
        speed = ", ".join(f"{d} ~{r:.0f} GFLOP/s" for d, r in self.rates.items())
        head = (f"expected {'' if self.known else 'at least '}~{_fmt(self.per_image)} per image on {self.device} "
                f"({speed} measured; a photo passing the filter with {self.boxes} boxes)")
        return head + ": " + "; ".join(parts)


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


# -- model shapes ----------------------------------------------------------------------------------
def _config_json(model: str) -> Optional[dict]:
    """A model's config.json from a local directory or the Hugging Face cache, never the network."""
    path = Path(model).expanduser() / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache
            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # noqa: BLE001 - not a repo id
            cached = None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def decoder_flops(tokens: int, layers: int, dim: int, q_dim: int, kv_dim: int, ffn: int, gated: int = 3) -> float:
    """Forward FLOPs of a pre-norm decoder stack over ``tokens`` tokens (full attention)."""
    per_layer = dim * (q_dim + 2 * kv_dim) + q_dim * dim + gated * dim * ffn
    return 2.0 * per_layer * layers * tokens + 4.0 * layers * tokens ** 2 * q_dim


def falcon_flops(cfg, image_size: tuple[int, int], ground_pixels: Optional[int], on_gpu: bool,
                 max_dim: int) -> Optional[float]:
    """One Falcon query at ``max_dim``: prefill of image + prompt tokens, then FALCON_DECODE_STEPS decode steps."""
    from pipeline.providers import falcon
    try:
        from falcon_perception import get_model_args
    except ImportError:
        return None
    conf = _config_json(cfg.model) or {}
    variant = ("perception-300m" if conf.get("do_segmentation") is False or "300m" in cfg.model.lower()
               else "perception")
    a = get_model_args(variant)
    q_dim, kv_dim = a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim
    view = fit_size(*image_size, ground_pixels)
    tokens = falcon.image_tokens(*view, max_dim) + PROMPT_TOKENS
    head = 2.0 * a.dim * a.vocab_size * (tokens if on_gpu else 1)  # the CPU adapter keeps the last position
    prefill = decoder_flops(tokens, a.n_layers, a.dim, q_dim, kv_dim, a.ffn_dim, gated=3) + head
    per_step = decoder_flops(1, a.n_layers, a.dim, q_dim, kv_dim, a.ffn_dim, gated=3)
    per_step += 4.0 * a.n_layers * tokens * q_dim  # attending to the prompt's keys
    per_step += 2.0 * a.dim * a.vocab_size + 4.0 * a.dim * (a.coord_dec_dim + a.coord_out_dim)
    return prefill + FALCON_DECODE_STEPS * per_step


def qwen_image_tokens(width: int, height: int) -> int:
    """Qwen2.5-VL image tokens for an image of this size (each side rounded to 28 px, one token per 28x28)."""
    side = int(math.sqrt(QWEN_PATCH_PIXELS))
    return max(1, round(width / side)) * max(1, round(height / side))


def qwen_vl_flops(conf: dict, tokens: int) -> Optional[float]:
    """One Qwen2.5-VL forward (vision tower + LLM prefill) on an image of ``tokens`` image tokens."""
    text = conf.get("text_config") or conf
    vis = conf.get("vision_config") or {}
    try:
        h, inter, layers = text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"]
        heads, kv_heads = text["num_attention_heads"], text.get("num_key_value_heads", text["num_attention_heads"])
        hv, iv, depth = vis["hidden_size"], vis["intermediate_size"], vis["depth"]
    except KeyError:
        return None
    patches = 4 * tokens  # 14 px patches, merged 2x2 into one token
    window = (vis.get("window_size", 112) // vis.get("patch_size", 14)) ** 2
    full = len(vis.get("fullatt_block_indexes", []))
    vision = 2.0 * depth * patches * (4 * hv * hv + 3 * hv * iv)
    vision += 4.0 * hv * patches * ((depth - full) * window + full * patches)
    vision += 2.0 * tokens * (4 * hv) * (4 * hv + vis.get("out_hidden_size", h))  # patch merger
    hd = h // heads
    llm = decoder_flops(tokens + PROMPT_TOKENS, layers, h, heads * hd, kv_heads * hd, inter, gated=3)
    return vision + llm


def owlv2_flops(conf: dict) -> Optional[float]:
    vis = conf.get("vision_config") or {}
    try:
        h, inter, layers = vis["hidden_size"], vis["intermediate_size"], vis["num_hidden_layers"]
        tokens = (vis["image_size"] // vis["patch_size"]) ** 2 + 1
    except KeyError:
        return None
    return decoder_flops(tokens, layers, h, h, h, inter, gated=2)


# -- the estimate --------------------------------------------------------------------------------------
def estimate(cfg: ProjectConfig, image_size: tuple[int, int] = REFERENCE_PHOTO, gflops: Optional[float] = None,
             boxes: int = BOXES) -> Estimate:
    """Expected seconds per stage for one ``image_size`` photo with this project's models and budgets."""
    from pipeline.model_version import resolved_dtypes
    from pipeline.providers.base import resolve_device
    from pipeline.providers.falcon import default_max_dimension, on_gpu
    st, prov, bud = cfg.stages, cfg.providers, cfg.budgets
    g = prov.grounder
    device = resolve_device(prov.vlm.device if prov.vlm.kind == "transformers" else g.device)
    falcon_backend = None
    if g.kind == "falcon" and st.ground:
        from pipeline.providers.falcon import choose_backend
        falcon_backend = choose_backend(g.backend)
        device = "mlx" if falcon_backend == "mlx" else resolve_device(g.device)
    probe_device = "cuda" if device.startswith("cuda") else "cpu"
    dtypes = {} if device == "mlx" else resolved_dtypes(cfg)  # MLX runs in its own fp32/fp16
    est = Estimate(device=device, rates={}, boxes=boxes)

    def seconds(flops: Optional[float], role: str) -> Optional[float]:
        dtype = dtypes.get(role, "fp32")
        if dtype not in est.rates:
            est.rates[dtype] = gflops if gflops is not None else matmul_gflops(probe_device, dtype)
        return None if flops is None else flops / (est.rates[dtype] * 1e9 * EFFICIENCY)

    def in_dtype(note: str, role: str) -> str:
        return f"{note}, {dtypes[role]}" if dtypes.get(role, "fp32") != "fp32" else note

    if st.filter or st.verify:
        vconf = _config_json(prov.vlm.model) if prov.vlm.kind == "transformers" else None
        for stage, on, px, per in (("filter", st.filter, bud.filter_pixels, "image"),
                                   ("verify", st.verify, bud.verify_pixels, "box")):
            if not on:
                continue
            w, h = fit_size(*image_size, px) if stage == "filter" else fit_size(448, 448, px)
            if prov.vlm.kind == "openai":
                est.stages.append(StageCost(stage, None, f"served by {prov.vlm.url}; measured from the first images",
                                            per))
            elif vconf is None:
                est.stages.append(StageCost(stage, None, f"no config.json for {prov.vlm.model} on disk", per))
            else:
                tokens = qwen_image_tokens(w, h)
                est.stages.append(StageCost(stage, seconds(qwen_vl_flops(vconf, tokens), "vlm"), in_dtype(
                    f"{prov.vlm.model}, {w}x{h} px = {tokens} image tokens", "vlm"), per))
    if st.ground:
        queries = len(cfg.query_labels())
        if g.kind == "falcon":
            max_dim = g.max_dimension or default_max_dimension(falcon_backend, g.device)
            one = falcon_flops(g, image_size, bud.ground_pixels, on_gpu(falcon_backend, g.device), max_dim)
            note = f"Falcon {g.model}, {queries} quer{'y' if queries == 1 else 'ies'}, max_dimension {max_dim}"
            est.stages.append(StageCost("ground", seconds(None if one is None else one * queries, "grounder"),
                                        in_dtype(note, "grounder")))
        elif g.kind == "owlv2":
            conf = _config_json(g.model)
            est.stages.append(StageCost("ground", seconds(owlv2_flops(conf) if conf else None, "grounder"),
                                        in_dtype(f"OWLv2 {g.model}, all queries in one pass", "grounder")))
        else:
            est.stages.append(StageCost("ground", None, f"{g.kind}: no FLOP model"))
    return est


def announce(cfg: ProjectConfig, emit=None) -> Estimate:
    """Log (or ``emit``) the estimate; a warning when an image will take a minute or more."""
    est = estimate(cfg)
    text = est.summary()
    if est.slow:
        text = ("SLOW CONFIGURATION: " + text + ". Lower budgets.ground_pixels / providers.grounder."
                "max_dimension / the number of queries, or run the models on a GPU")
    if emit is not None:
        emit(text)
    else:
        log.log(logging.WARNING if est.slow else logging.INFO, "%s", text)
    return est


class Observed:
    """Seconds each stage really took on the first images of this process: after ``OBSERVE_AFTER`` images
    their median per stage is logged once, beside what ``estimate`` said (a server VLM's only figure)."""

    def __init__(self, after: int = OBSERVE_AFTER):
        self.after = after
        self.samples: dict[str, list[float]] = {}
        self.images = 0
        self.reported = False
        self._lock = threading.Lock()

    def add(self, timings: dict) -> Optional[str]:
        """Record one image's stage seconds; returns (and logs) the report when this image completes it."""
        with self._lock:
            if self.reported:
                return None
            for stage, seconds in timings.items():
                self.samples.setdefault(stage, []).append(float(seconds))
            self.images += 1
            if self.images < self.after:
                return None
            self.reported = True
        parts = [f"{stage} {statistics.median(xs):.2f} s" for stage, xs in self.samples.items()]
        total = sum(statistics.median(xs) for xs in self.samples.values())
        text = (f"measured on the first {self.images} images: ~{_fmt(total)} per image ({'; '.join(parts)}; "
                "medians, cached answers included)")
        log.info("%s", text)
        return text


observed = Observed()
