"""Project YAMLs written for data-label-factory (the earlier project), read as label-factory ones.

``from_data_label_factory(data, source)`` turns such a mapping into our shape before validation
and logs one warning per key it ignores, naming the file and the key. A mapping that has none of
data-label-factory's marks is returned unchanged, so our own strict validation still catches
typos. It must not read files, the environment or the network: it only rewrites a dict.

data-label-factory's shape (its ``project.py`` and ``projects/*.yaml``) and what becomes of it:

* ``project_name``, ``target_object``, ``description``, ``data_root`` (``~`` expanded),
  ``falcon_queries``: the same keys here.
* ``buckets: {name: {queries: [...]}}`` (or ``{name: [...]}``) -> ``buckets: {name: [...]}``;
  other keys inside a bucket are ignored.
* ``prompts.filter`` / ``prompts.verify``: kept; ``{query}`` (the grounding query of the box
  being verified) becomes ``{target_object}``, the one placeholder here. ``prompts.label_describe``
  is ignored (no describe step here).
* ``backends: {filter, label, verify}``: ``qwen`` (Qwen2.5-VL-3B on mlx_vlm.server, which
  data-label-factory expects at http://localhost:8291) and ``openrouter`` (OpenAI-compatible,
  key in OPENROUTER_API_KEY, model from ``openrouter.model``) become ``providers.vlm``; one VLM
  serves filter and verify here, so the filter's wins when they differ. ``label: falcon``
  becomes ``providers.grounder`` Falcon Perception. ``pod`` (RunPod) runs here locally as
  data-label-factory maps it (label -> falcon, filter/verify -> qwen). Any other backend
  (gemma via mac_tensor, wilddet3d, chandra, ...) is ignored: the project's providers apply.
* ``r2`` (Cloudflare R2 storage) and ``pod`` (RunPod settings) are ignored: images stay under
  ``data_root`` and go to Label Studio.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DLF_ONLY_KEYS = ("r2", "backends", "pod", "openrouter")
QWEN = {"kind": "openai", "model": "mlx-community/Qwen2.5-VL-3B-Instruct-4bit", "url": "http://localhost:8291/v1"}
OPENROUTER = {"kind": "openai", "model": "google/gemma-4-26b-a4b-it", "url": "https://openrouter.ai/api/v1",
              "api_key_env": "OPENROUTER_API_KEY"}
VLM_STAGES = ("filter", "verify")
IGNORED = {
    "r2": "Cloudflare R2 storage is not used here: images stay under data_root and are imported into "
          "Label Studio",
    "pod": "RunPod settings are not used here: the models run where label-factory runs",
    "openrouter": "used only when a stage's backend is openrouter",
}


def is_data_label_factory(data: Any) -> bool:
    """True when ``data`` carries a mark only data-label-factory's shape has."""
    if not isinstance(data, dict):
        return False
    buckets, prompts = data.get("buckets"), data.get("prompts")
    return (any(k in data for k in DLF_ONLY_KEYS)
            or (isinstance(buckets, dict) and any(isinstance(v, dict) for v in buckets.values()))
            or (isinstance(prompts, dict) and ("label_describe" in prompts
                                               or any("{query}" in str(v) for v in prompts.values()))))


def from_data_label_factory(data: Any, source: str = "<project>") -> Any:
    """``data`` in label-factory's shape (a new dict) when it is data-label-factory-shaped, else ``data``."""
    if not is_data_label_factory(data):
        return data

    def warn(key: str, why: str) -> None:
        log.warning("%s: %s: %s", source, key, why)

    out = {k: v for k, v in data.items() if k not in DLF_ONLY_KEYS}
    log.info("%s: data-label-factory project YAML; mapping it to label-factory's shape", source)
    if isinstance(data.get("buckets"), dict):
        out["buckets"] = _buckets(data["buckets"], warn)
    if isinstance(data.get("prompts"), dict):
        out["prompts"] = _prompts(data["prompts"], warn)
    backends = data.get("backends")
    used_openrouter = False
    if isinstance(backends, dict):
        used_openrouter = _backends(backends, data, out, warn, source)
    elif backends is not None:
        warn("backends", f"expected a mapping of stage -> backend, got {type(backends).__name__}; ignored")
    for key in ("r2", "pod", "openrouter"):
        if key in data and not (key == "openrouter" and used_openrouter):
            warn(key, f"ignored ({IGNORED[key]})")
    return out


def _buckets(buckets: dict, warn) -> dict:
    out = {}
    for name, spec in buckets.items():
        if isinstance(spec, dict) and "queries" in spec:
            for extra in spec:
                if extra != "queries":
                    warn(f"buckets.{name}.{extra}", "ignored (a bucket is its list of queries here)")
            out[name] = spec["queries"]
        else:
            out[name] = spec   # a list already, or something validation will name
    return out


def _prompts(prompts: dict, warn) -> dict:
    out = {}
    for key, text in prompts.items():
        if key not in VLM_STAGES:
            warn(f"prompts.{key}", "ignored (label-factory has prompts for filter and verify only)")
            continue
        if isinstance(text, str) and "{query}" in text:
            warn(f"prompts.{key}", "{query} replaced by {target_object} (the only placeholder here; "
                                   "verify asks about the target object)")
            text = text.replace("{query}", "{target_object}")
        out[key] = text
    return out


def _backends(backends: dict, data: dict, out: dict, warn, source: str) -> bool:
    """Map ``backends`` into ``out["providers"]``; True when the openrouter section was used."""
    providers = dict(out.get("providers") or {})
    vlm, vlm_from, used_openrouter = None, None, False
    for stage, name in backends.items():
        key, name = f"backends.{stage}", str(name).strip().lower()
        if stage in VLM_STAGES:
            if name == "pod":
                warn(key, "pod (RunPod) runs here as qwen, as data-label-factory maps it")
                name = "qwen"
            if name == "qwen":
                spec = dict(QWEN)
            elif name == "openrouter":
                spec = {**OPENROUTER, **_openrouter_model(data, warn)}
                used_openrouter = True
            else:
                warn(key, f"{name!r} is not a backend here; the stage uses providers.vlm")
                continue
            if vlm is None:
                vlm, vlm_from = spec, key
            elif spec != vlm:
                warn(key, f"{name!r} differs from {vlm_from}; one VLM serves filter and verify here "
                          f"({vlm_from} is used)")
        elif stage == "label":
            if name == "pod":
                warn(key, "pod (RunPod) runs here as falcon (Falcon Perception), as data-label-factory maps it")
                name = "falcon"
            if name == "falcon":
                if "grounder" in providers:
                    warn(key, "ignored: providers.grounder is set")
                else:
                    providers["grounder"] = {"kind": "falcon"}
            else:
                warn(key, f"{name!r} is not a grounder here; boxes come from providers.grounder "
                          "(falcon, owlv2 or grounding-dino)")
        else:
            warn(key, "ignored (stages here: filter, label -> ground, verify)")
    if vlm is not None:
        if "vlm" in providers:
            warn(vlm_from, "ignored: providers.vlm is set")
        else:
            providers["vlm"] = vlm
            log.info("%s: %s -> providers.vlm %s at %s (LF_VLM_URL overrides)", source, vlm_from, vlm["model"],
                     vlm["url"])
    if providers:
        out["providers"] = providers
    return used_openrouter


def _openrouter_model(data: dict, warn) -> dict:
    section = data.get("openrouter")
    if not isinstance(section, dict):
        return {}
    for extra in section:
        if extra != "model":
            warn(f"openrouter.{extra}", "ignored (only openrouter.model is used)")
    return {"model": str(section["model"])} if section.get("model") else {}
