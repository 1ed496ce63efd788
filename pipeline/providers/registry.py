"""One provider instance per model per process.

``get_vlm(cfg)`` / ``get_grounder(cfg)`` / ``get_segmenter(cfg)`` build a provider on first use and hand
the same object to every later caller whose config has the same model-relevant fields (they live in
``providers``, a ``pipeline.process_cache.ProcessCache``: a model loads once; ``providers.clear()`` forgets
them). Models are built one at a time per process: transformers builds a model on the meta device through
process-wide patches, so a model built while another is loading in a background thread (a load that outlived
its request's deadline) could keep meta tensors and fail with "Cannot copy out of meta tensor".
Provider modules are imported lazily: torch /
transformers / mlx are only needed for the kinds in use.

A provider that cannot be built raises ``hub.ModelUnavailable`` (which model, why, how to get it).
Under a request's deadline (``pipeline.deadline``) the caller waits for a load no longer than the
deadline: the load goes on in the background for the requests after it, and this one gets
``ModelUnavailable`` saying the model was still loading.
"""
from __future__ import annotations

import importlib
import threading

from pipeline import deadline
from pipeline.config import GrounderProvider, SegmenterProvider, VLMProvider
from pipeline.process_cache import ProcessCache, StillLoading
from pipeline.providers.base import VLM, Grounder, ProviderError, Segmenter
from pipeline.providers.hub import ModelUnavailable

providers: ProcessCache = ProcessCache("providers")

# config fields that change the loaded object, per provider kind (everything else is shared)
_VLM_FIELDS = {
    "openai": ("model", "url", "api_key_env", "timeout", "retries", "concurrency"),
    "transformers": ("model", "device", "max_batch", "dtype"),
}
_GROUNDER_FIELDS = {
    "falcon": ("model", "device", "backend", "max_new_tokens", "max_dimension", "dtype"),
    "owlv2": ("model", "device", "dtype"),
    "grounding-dino": ("model", "device", "dtype"),
    "student": ("model", "device", "dtype", "zoom"),
    "sam3": ("model", "device", "dtype"),
}


def _key(role: str, cfg, fields: dict) -> tuple:
    names = fields.get(cfg.kind) or tuple(sorted(type(cfg).model_fields))
    return (role, cfg.kind) + tuple((n, getattr(cfg, n)) for n in names)


# provider kind -> "module:Class" with a from_config(cfg) classmethod
_VLM_CLASSES = {
    "transformers": "pipeline.providers.transformers_vlm:TransformersVLM",
    "openai": "pipeline.providers.openai_vlm:OpenAIVLM",
}
_GROUNDER_CLASSES = {
    "owlv2": "pipeline.providers.hf_detectors:OWLv2Grounder",
    "grounding-dino": "pipeline.providers.hf_detectors:GroundingDINOGrounder",
    "falcon": "pipeline.providers.falcon:FalconGrounder",
    "student": "pipeline.providers.student:StudentGrounder",
    "sam3": "pipeline.providers.sam:Sam3Grounder",
}
_SEGMENTER_CLASSES = {
    "sam": "pipeline.providers.sam:SamSegmenter",
}


_BUILDING = threading.RLock()  # one model built at a time per process (module docstring)


def _build(role: str, classes: dict, cfg):
    with _BUILDING:
        return _build_one(role, classes, cfg)


def _build_one(role: str, classes: dict, cfg):
    if cfg.kind not in classes:
        raise ModelUnavailable(f"unknown {role} provider kind {cfg.kind!r} (one of {', '.join(sorted(classes))})")
    module, _, name = classes[cfg.kind].partition(":")
    try:
        return getattr(importlib.import_module(module), name).from_config(cfg)
    except ModelUnavailable:
        raise
    except ProviderError as e:  # names the model and why already
        raise ModelUnavailable(str(e)) from e
    except Exception as e:  # noqa: BLE001 - weights, files, packages: the model cannot be had
        raise ModelUnavailable(f"{role} {cfg.kind} {getattr(cfg, 'model', '')!r} cannot be loaded: "
                               f"{type(e).__name__}: {e}") from e


def _provider(role: str, key: tuple, classes: dict, cfg):
    """The provider under ``key``, built once; under a deadline, waited for no longer than it."""
    left = deadline.remaining()
    try:
        return providers.get(key, lambda: _build(role, classes, cfg), wait=None if left is None else max(0.0, left))
    except StillLoading:
        raise ModelUnavailable(f"{deadline.current().describe()} ran out while the {role} "
                               f"{getattr(cfg, 'model', cfg.kind)!r} was loading; it goes on loading in the "
                               "background and the requests after it use it") from None


def get_vlm(cfg: VLMProvider) -> VLM:
    return _provider("VLM", _key("vlm", cfg, _VLM_FIELDS), _VLM_CLASSES, cfg)


def get_grounder(cfg: GrounderProvider) -> Grounder:
    return _provider("grounder", _key("grounder", cfg, _GROUNDER_FIELDS), _GROUNDER_CLASSES, cfg)


def get_segmenter(cfg: SegmenterProvider) -> Segmenter:
    return _provider("segmenter", _key("segmenter", cfg, {}), _SEGMENTER_CLASSES, cfg)
