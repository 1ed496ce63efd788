"""The one ``model_version``: what every prediction label-factory writes (backend, ``predict``, ``run``) is
labelled with and what it reports to Label Studio, and the precision part of it (the dtype each torch
model of a project runs in on this machine, ``pipeline.hardware``)."""
from __future__ import annotations

from typing import Optional

from pipeline.config import ProjectConfig

TORCH_GROUNDERS = ("owlv2", "grounding-dino", "sam3", "student", "falcon")


def dtype_choices(cfg: ProjectConfig) -> dict:
    """role -> ``pipeline.hardware.DtypeChoice`` (dtype and reason) of each torch model this project runs, on
    this machine, for its ``dtype`` setting and device: the VLM when in-process, the grounder (Falcon only on
    its torch path; a student only on CUDA, where ultralytics runs it in fp16), the segmenter, and the CLIP
    embedder (on the CPU) when identify is on."""
    from pipeline.hardware import DtypeChoice, choose_dtype
    from pipeline.providers.base import resolve_device
    p, st = cfg.providers, cfg.stages
    roles = {}
    if p.vlm.kind == "transformers" and (st.filter or st.verify):
        roles["vlm"] = p.vlm
    g = p.grounder
    if st.ground and g.kind in TORCH_GROUNDERS:
        if g.kind == "falcon":
            from pipeline.providers.falcon import runs_on_torch
            if runs_on_torch(g.backend):
                roles["grounder"] = g
        elif g.kind != "student" or resolve_device(g.device).startswith("cuda"):
            roles["grounder"] = g
    roles["segmenter"] = p.segmenter
    if st.identify:
        roles["identify"] = p.identify
    out = {role: choose_dtype(lambda prov=prov: resolve_device(getattr(prov, "device", "cpu")), prov.dtype)
           for role, prov in roles.items()}  # identify's embedder: the CPU; the device found only for auto
    if "grounder" in out and g.kind == "student":
        from pipeline.providers.student import student_dtype
        from pipeline.providers.yolo import torch_device
        out["grounder"] = DtypeChoice(student_dtype(torch_device(g.device), g.dtype),
                                      "ultralytics: half precision on CUDA unless the setting says fp32")
    return out


def resolved_dtypes(cfg: ProjectConfig) -> dict[str, str]:
    """role -> fp32 / bf16 / fp16 (``dtype_choices`` without the reasons)."""
    return {role: c.dtype for role, c in dtype_choices(cfg).items()}


def precision_tag(cfg: ProjectConfig) -> str:
    """``""`` when every torch model of the project runs in fp32 here, else ``-bf16`` (``-bf16+fp16``, ...)."""
    reduced = sorted(set(resolved_dtypes(cfg).values()) - {"fp32"})
    return "-" + "+".join(reduced) if reduced else ""



def model_version(cfg: Optional[ProjectConfig], index_version: Optional[int] = None) -> str:
    """The ``model_version`` of every prediction label-factory writes (backend, ``predict``, ``run``)
    and reports to Label Studio: ``<project_name>-<fingerprint>-<vlm kind>+<grounder kind>`` of the
    resolved config (``+route-student-<weights hash>`` when the student goes first), ``-bf16``
    (``precision_tag``) when its torch models run in reduced precision on this machine, then
    ``+identify-v<N>`` when the predictions name boxes from version N of a reference index (``cfg`` None:
    the stand-alone identify backend, ``identify-v<N>`` alone).
    Equal versions mean the same predictions, so a task that has one is not predicted again."""
    return with_index(None if cfg is None else base_version(cfg), index_version)


def base_version(cfg: ProjectConfig) -> str:
    """``model_version`` without the reference index's part (compute it once per request, then
    ``with_index``)."""
    p = cfg.providers
    route = f"+route-{cfg.route.identity()}" if cfg.route is not None else ""
    return f"{cfg.project_name}-{cfg.fingerprint()}-{p.vlm.kind}+{p.grounder.identity()}{route}{precision_tag(cfg)}"


def with_index(base: Optional[str], index_version: Optional[int]) -> str:
    """``base`` (a ``base_version``) with ``+identify-v<N>`` when the predictions name boxes from index version N."""
    parts = [base] if base else []
    if index_version is not None:
        parts.append(f"identify-v{index_version}")
    if not parts:
        raise ValueError("model_version needs a project config or an index version")
    return "+".join(parts)
