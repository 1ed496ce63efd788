"""Falcon Perception as a grounder (package ``falcon-perception``).

Two backends, both from the package: torch and MLX.  The package's torch model needs CUDA (Triton kernels,
flex attention); on a CPU ``falcon_cpu.enable`` swaps those pieces for plain torch ops (see that module).
MLX is the fast path on Apple silicon; on a Linux CPU its wheel multiplies ~10x slower than torch here
(reference BLAS, single-threaded softmax).  ``backend: auto`` therefore picks torch on CUDA, MLX on Apple
silicon, and torch on the CPU everywhere else.

Falcon encodes the image at 16x16 px per token after resizing its longest side to ``max_dimension``
(the package default, 1024, gives ~3k tokens for a 4:3 photo); prefill dominates the cost and grows faster
than linearly with it, so the default is lower on a CPU (``CPU_MAX_DIMENSION``).
Weights load through the package's own loader, ``falcon_perception.load_and_prepare_model``, from a hub
id (``tiiuae/Falcon-Perception``) or a local export directory (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json).

One detection task per query, batched.  Falcon emits, per object, a ``<coord>`` token (box centre x, y)
and a ``<size>`` token (box h, w), all normalised to [0, 1] of the input image; ``raw_to_xyxy`` turns
them into pixel xyxy.  Falcon gives no confidence: scores are NaN (mask area is not a score).

``segment`` runs the segmentation task instead: after each box Falcon emits a ``<seg>`` token whose
mask comes back as a COCO RLE at the resized input's size; ``pair_masks`` brings each to the image's
size and gives it to its box (by order, or by overlap when the package skipped an empty mask).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import platform
import sys
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import supervision as sv
from PIL import Image

from pipeline.detections import Detections, mask_box
from pipeline.hardware import TORCH_NAMES, choose_dtype, to_model
from pipeline.process_cache import ProcessCache
from pipeline.providers import hub
from pipeline.providers.base import Grounder, ProviderError, resolve_device

log = logging.getLogger(__name__)
_backends: ProcessCache = ProcessCache("falcon backends")  # setting -> the backend chosen

MIN_DIMENSION = 256  # package defaults (demo scripts, server MIN_IMAGE_SIZE / MAX_IMAGE_SIZE)
MAX_DIMENSION = 1024
CPU_MAX_DIMENSION = 512  # ~770 image tokens for 4:3; see the README's Falcon benchmark for the trade-off
PATCH = 16  # px per image token side


# -- output conversion ---------------------------------------------------------------------
def pair_bbox_entries(raw: list) -> list[dict]:
    """Pair Falcon's interleaved ``[{x, y}, {h, w}, ...]`` into ``[{x, y, h, w}, ...]`` (as the package does)."""
    boxes, current = [], {}
    for entry in raw or []:
        if not isinstance(entry, dict):
            continue
        current.update(entry)
        if all(k in current for k in ("x", "y", "h", "w")):
            boxes.append(dict(current))
            current = {}
    return boxes


def raw_to_xyxy(raw: list, width: int, height: int) -> np.ndarray:
    """Falcon's raw box entries (normalised centre x, y and size h, w) -> (N, 4) pixel xyxy.

    Boxes are clamped to the image; boxes with no area left (or non-finite values) are dropped."""
    rows = []
    for b in pair_bbox_entries(raw):
        cx, cy, bh, bw = (float(b[k]) for k in ("x", "y", "h", "w"))
        if not all(math.isfinite(v) for v in (cx, cy, bh, bw)):
            continue
        x1 = min(max((cx - bw / 2) * width, 0.0), width)
        y1 = min(max((cy - bh / 2) * height, 0.0), height)
        x2 = min(max((cx + bw / 2) * width, 0.0), width)
        y2 = min(max((cy + bh / 2) * height, 0.0), height)
        if x2 > x1 and y2 > y1:
            rows.append((x1, y1, x2, y2))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def pair_masks(masks_rle: list, xyxy: np.ndarray, width: int, height: int) -> list:
    """Falcon's masks (COCO RLE at the resized input's size, one per ``<seg>`` token, empty ones left out
    by the package) -> one (height, width) bool mask or None per box of ``xyxy``.

    Falcon emits box, then mask, object after object, so with as many masks as boxes that each overlap
    their box they pair in order; otherwise each box takes the unused mask whose bounding box overlaps
    it most (IoU > 0), and a box no mask overlaps gets None."""
    from pycocotools import mask as coco_mask
    full = []
    for rle in masks_rle or []:
        if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
            continue
        m = coco_mask.decode([rle])[:, :, 0]
        if m.shape != (height, width):
            m = np.asarray(Image.fromarray(m * 255).resize((width, height), Image.NEAREST)) > 127
        full.append(m.astype(bool))
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    out: list = [None] * len(boxes)
    if not full or not len(boxes):
        return out
    iou = sv.box_iou_batch(boxes, np.stack([mask_box(m) for m in full]))
    if len(full) == len(boxes) and (np.diag(iou) > 0).all():
        return full
    for _ in range(min(len(boxes), len(full))):
        b, m = np.unravel_index(int(iou.argmax()), iou.shape)
        if iou[b, m] <= 0:
            break
        out[b] = full[m]
        iou[b, :] = -1
        iou[:, m] = -1
    return out


def detections_from_raw(raw: list, query: str, width: int, height: int) -> Detections:
    xyxy = raw_to_xyxy(raw, width, height)
    n = len(xyxy)
    return Detections(xyxy=xyxy, scores=np.full(n, np.nan, np.float32), labels=[query] * n, queries=[query] * n)


# -- loading ---------------------------------------------------------------------------------
def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def choose_backend(backend: str) -> str:
    """The backend for the ``backend`` setting on this machine, decided (and logged) once per process."""
    return _backends.get(backend, lambda: _decide_backend(backend))


def runs_on_torch(backend: str) -> bool:
    """Whether the ``backend`` setting runs Falcon on its torch path on this machine (``choose_backend``'s
    answer, without importing torch or logging: auto is MLX on Apple silicon, which has no CUDA, else torch)."""
    return backend == "torch" or (backend == "auto" and not _apple_silicon())


def _decide_backend(backend: str) -> str:
    if backend == "auto":
        if _cuda_available():
            log.info("falcon: using torch backend (CUDA)")
            return "torch"
        if _apple_silicon():
            log.info("falcon: using MLX backend (Apple silicon, no CUDA)")
            return "mlx"
        log.info("falcon: using torch backend on the CPU (no CUDA; MLX's CPU build is ~10x slower here)")
        return "torch"
    log.info("falcon: using %s backend (configured)", "MLX" if backend == "mlx" else backend)
    return backend


def on_gpu(backend: str, device: str) -> bool:
    """Whether this backend/device runs on a GPU (CUDA, or MLX's Metal on Apple silicon)."""
    if backend == "mlx":
        return _apple_silicon()
    return resolve_device(device).startswith("cuda")


def default_max_dimension(backend: str, device: str) -> int:
    return MAX_DIMENSION if on_gpu(backend, device) else CPU_MAX_DIMENSION


class _Size:
    """Just a size, for running the package's resize rule without pixels."""

    def __init__(self, size):
        self.size = size

    def resize(self, size, *args, **kwargs) -> "_Size":
        return _Size(size)


def image_tokens(width: int, height: int, max_dimension: int, min_dimension: int = MIN_DIMENSION) -> int:
    """Image tokens Falcon spends on a ``width`` x ``height`` image (the package's resize, 16 px patches)."""
    from falcon_perception.data import resize_image_if_necessary
    w, h = resize_image_if_necessary(_Size((max(1, width), max(1, height))), min(min_dimension, max_dimension),
                                     max_dimension).size
    return max(1, round(h / PATCH)) * max(1, round(w / PATCH))


class _LogStream(io.TextIOBase):
    """File-like sink that sends the package's print() output to our log instead of stdout."""

    def write(self, s: str) -> int:
        for line in s.splitlines():
            if line.strip():
                log.info("falcon_perception: %s", line.strip())
        return len(s)


def load_falcon(model: str, backend: str, device: str = "auto", dtype: str = "auto"):
    """``(model, tokenizer, model_args)`` via ``falcon_perception.load_and_prepare_model``; the torch path in
    ``dtype`` (``pipeline.hardware.choose_dtype``), the MLX path in fp16 on Apple's GPU, else fp32."""
    try:
        import falcon_perception as fp
    except ImportError as e:
        raise ProviderError(f"falcon: the falcon-perception package is not installed ({e})") from None
    source = hub.locate(model, "falcon grounder")
    where = {"hf_local_dir": source} if Path(source).is_dir() else {"hf_model_id": source}
    try:
        with contextlib.redirect_stdout(_LogStream()):
            if backend == "mlx":
                try:
                    import mlx.core as mx
                except ImportError as e:
                    raise ProviderError(f"falcon: MLX backend needs mlx (pip install 'mlx[cpu]' on Linux): {e}") \
                        from None
                dtype = "float16" if mx.default_device().type == mx.gpu else "float32"
                return fp.load_and_prepare_model(**where, backend="mlx", dtype=dtype)
            dev = resolve_device(device)
            if dev.startswith("cuda"):
                fp.setup_torch_config()
            model, tokenizer, args = fp.load_and_prepare_model(
                **where, backend="torch", device=dev, dtype=TORCH_NAMES[choose_dtype(dev, dtype).dtype],
                compile=False)
            if dev == "cpu":
                from pipeline.providers import falcon_cpu
                falcon_cpu.enable(model)
            return model, tokenizer, args
    except ProviderError:
        raise
    except Exception as e:  # hub offline / missing files / bad weights: say which model and why
        raise ProviderError(f"falcon: cannot load model {model!r} ({backend} backend): "
                            f"{type(e).__name__}: {str(e)[:300]}") from e


class FalconGrounder(Grounder):
    name = "falcon"
    gives_masks = True

    def __init__(self, model, tokenizer, model_args, backend: str, model_id: str = "", device: str = "auto",
                 max_new_tokens: int = 64, batch_size: int = 4,
                 min_dimension: int = MIN_DIMENSION, max_dimension: int | None = None, dtype: str = "auto"):
        self.model = model
        self.tokenizer = tokenizer
        self.model_args = model_args
        self.backend = backend
        self.model_id = model_id
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.batch_size = max(1, batch_size)
        self.max_dimension = int(max_dimension or default_max_dimension(backend, device))
        self.dtype = None if backend == "mlx" else choose_dtype(resolve_device(device), dtype)
        self.min_dimension = min_dimension  # capped at max_dimension when used
        # the package's mask upsampler (AnyUp) runs on flex attention, which the CPU adapter does not
        # replace: on a CPU the torch path detects, and masks come from providers.segmenter
        self.gives_masks = backend == "mlx" or resolve_device(device) != "cpu"
        if backend == "mlx":
            from falcon_perception.mlx.batch_inference import BatchInferenceEngine
        else:
            from falcon_perception.batch_inference import BatchInferenceEngine
        self.engine = BatchInferenceEngine(model, tokenizer)
        self._lock = threading.Lock()  # one generation at a time per model (KV cache, MLX streams)
        stop = [tokenizer.eos_token_id, getattr(tokenizer, "end_of_query_token_id", None)]
        self.stop_token_ids = [t for t in stop if t is not None]

    @classmethod
    def from_config(cls, cfg) -> "FalconGrounder":
        backend = choose_backend(cfg.backend)
        model, tokenizer, args = load_falcon(cfg.model, backend, cfg.device, cfg.dtype)
        return cls(model, tokenizer, args, backend, model_id=cfg.model, device=cfg.device,
                   max_new_tokens=cfg.max_new_tokens, max_dimension=cfg.max_dimension, dtype=cfg.dtype)

    def describe(self) -> dict:
        where = "mlx" if self.backend == "mlx" else resolve_device(self.device)
        return {"name": self.name, "model": self.model_id, "backend": self.backend, "device": where,
                "dtype": self.dtype.dtype if self.dtype else "mlx",
                "max_new_tokens": self.max_new_tokens, "max_dimension": self.max_dimension}

    def _generate(self, image: Image.Image, queries: list[str]) -> list[list]:
        """Raw box entries (``aux.bboxes_raw``) for each query, in order."""
        return [a.bboxes_raw for a in self._run_task(image, queries, "detection")]

    def _run_task(self, image: Image.Image, queries: list[str], task: str) -> list:
        """The package's aux output (``bboxes_raw``, ``masks_rle``) for each query, in order."""
        from falcon_perception import build_prompt_for_task
        if self.backend == "mlx":
            from falcon_perception.mlx.batch_inference import process_batch_and_generate
        else:
            from falcon_perception.batch_inference import process_batch_and_generate
        pairs = [(image, build_prompt_for_task(q, task)) for q in queries]
        batch = process_batch_and_generate(self.tokenizer, pairs, max_length=self.model_args.max_seq_len,
                                           min_dimension=min(self.min_dimension, self.max_dimension),
                                           max_dimension=self.max_dimension)
        if self.backend != "mlx":
            batch = to_model(dict(batch), resolve_device(self.device), self.dtype.torch_dtype)
        with self._lock:
            _, aux = self.engine.generate(tokens=batch["tokens"], pos_t=batch["pos_t"], pos_hw=batch["pos_hw"],
                                          pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"],
                                          max_new_tokens=self.max_new_tokens, temperature=0.0,
                                          stop_token_ids=self.stop_token_ids, task=task)
        return aux

    def segment(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        """``boxes`` from the segmentation task: every box with the mask Falcon drew for it."""
        def with_masks(aux, query: str, width: int, height: int) -> Detections:
            d = detections_from_raw(aux.bboxes_raw, query, width, height)
            d.set_masks(range(len(d)), pair_masks(aux.masks_rle, d.xyxy, width, height))
            return d
        return self._per_query(image, queries, "segmentation",
                               lambda im, chunk: self._run_task(im, chunk, "segmentation"), with_masks)

    def boxes(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        return self._per_query(image, queries, "detection", self._generate, detections_from_raw)

    def _per_query(self, image: Image.Image, queries: Sequence[str], task: str, run, convert) -> Detections:
        """``run(image, chunk)`` over the queries ``batch_size`` at a time, ``convert(output, query, w, h)``
        each query's output to Detections."""
        queries = [q for q in dict.fromkeys(str(q).strip() for q in queries) if q]
        if not queries:
            return Detections.empty()
        image = image.convert("RGB")
        width, height = image.size
        parts = []
        for i in range(0, len(queries), self.batch_size):
            chunk = queries[i:i + self.batch_size]
            try:
                outputs = run(image, chunk)
            except Exception as e:
                raise ProviderError(f"falcon ({self.backend}): {task} failed for {chunk}: "
                                    f"{type(e).__name__}: {str(e)[:300]}") from e
            parts += [convert(out, q, width, height) for out, q in zip(outputs, chunk)]
        return Detections.merge(parts)
