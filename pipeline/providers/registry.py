"""One provider instance per model per process.

``get_vlm(cfg)`` / ``get_grounder(cfg)`` / ``get_segmenter(cfg)`` build a provider on first use and hand
the same object to every later caller whose config has the same model-relevant fields (they live in
``providers``, a ``pipeline.process_cache.ProcessCache``: a model loads once, different models in
parallel; ``providers.clear()`` forgets them).  Provider modules are imported lazily: torch /
transformers / mlx are only needed for the kinds in use.
"""
from __future__ import annotations

import importlib

from pipeline.config import GrounderProvider, SegmenterProvider, VLMProvider
from pipeline.process_cache import ProcessCache
from pipeline.providers.base import VLM, Grounder, Segmenter

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
    "student": ("model", "device", "dtype"),
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


def _build(role: str, classes: dict, cfg):
    if cfg.kind not in classes:
        raise ValueError(f"unknown {role} provider kind {cfg.kind!r}")
    module, _, name = classes[cfg.kind].partition(":")
    return getattr(importlib.import_module(module), name).from_config(cfg)


def get_vlm(cfg: VLMProvider) -> VLM:
    return providers.get(_key("vlm", cfg, _VLM_FIELDS), lambda: _build("VLM", _VLM_CLASSES, cfg))


def get_grounder(cfg: GrounderProvider) -> Grounder:
    return providers.get(_key("grounder", cfg, _GROUNDER_FIELDS), lambda: _build("grounder", _GROUNDER_CLASSES, cfg))


def get_segmenter(cfg: SegmenterProvider) -> Segmenter:
    return providers.get(_key("segmenter", cfg, {}), lambda: _build("segmenter", _SEGMENTER_CLASSES, cfg))
