"""Project YAML schema (pydantic), the one config-resolution function (``load_project``: YAML + LF_*
environment overrides) and the one ``model_version`` function. Every error names the file and the field."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import string
from pathlib import Path
from typing import Annotated, Literal, Mapping, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.config_compat import from_data_label_factory
from pipeline.settings import DTYPE_SETTINGS, Models

log = logging.getLogger(__name__)

DEFAULT_FILTER_PROMPT = "Does this image show a {target_object}? Answer YES or NO."
DEFAULT_VERIFY_PROMPT = "Is this a {target_object}? Answer YES or NO."


class ConfigError(ValueError):
    """A project YAML that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_template(template: str) -> str:
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    unknown = sorted({f for f in fields if f != "target_object"})
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown}; only {{target_object}} is filled in "
                         "(write literal braces as {{ and }})")
    return template


class Prompts(_Strict):
    filter: str = DEFAULT_FILTER_PROMPT
    verify: str = DEFAULT_VERIFY_PROMPT

    _check = field_validator("filter", "verify")(classmethod(lambda cls, v: _check_template(v)))


class Stages(_Strict):
    filter: bool = True
    ground: bool = True
    verify: bool = True
    identify: bool = False


class LabelThresholds(_Strict):
    """One label's own thresholds; a missing one is the project-wide value."""
    verify: Optional[float] = Field(None, ge=0, le=1)
    grounding: Optional[float] = Field(None, ge=0, le=1)


class Thresholds(_Strict):
    filter: float = Field(0.5, ge=0, le=1, description="min P(yes) for an image to go on to grounding")
    grounding: float = Field(0.1, ge=0, le=1, description="min grounder score (ignored by Falcon: it has none)")
    verify: float = Field(0.5, ge=0, le=1, description="min P(yes) for a box crop to be kept")
    nms_iou: float = Field(0.5, gt=0, le=1)
    max_boxes: int = Field(20, ge=1)
    crop_padding: float = Field(0.15, ge=0, le=2, description="verify crop padding, fraction of box size per side")
    per_label: dict[str, LabelThresholds] = Field(
        default_factory=dict, description="label -> {verify, grounding}: that label's thresholds instead of the "
                                          "two above (`label-factory calibrate` writes them)")

    def verify_for(self, label) -> float:
        own = self.per_label.get(str(label))
        return self.verify if own is None or own.verify is None else own.verify

    def grounding_for(self, label) -> float:
        own = self.per_label.get(str(label))
        return self.grounding if own is None or own.grounding is None else own.grounding


QWEN_PATCH_PIXELS = 28 * 28  # one Qwen2.5-VL image token (14 px patches merged 2x2)


class Budgets(_Strict):
    """How many pixels each stage may look at. A bigger image (or crop) is downscaled once, aspect kept,
    before the model's own pre-processing (for a model that pads to a square the budget counts the square);
    boxes are mapped back to the original image exactly.
    ``null`` = no limit (the stage sees full resolution). Defaults, and why, in the README (Project YAML)."""
    decode_pixels: Optional[int] = Field(
        24_000_000, ge=1_000_000,
        description="working resolution: images above it are decoded at 1/2, 1/4 or 1/8 size (JPEG DCT "
                    "scaling, PNG a band of rows at a time, else decoded whole and box-averaged), the least "
                    "reduction that gets under it")
    filter_pixels: Optional[int] = Field(
        1024 * QWEN_PATCH_PIXELS, ge=QWEN_PATCH_PIXELS,
        description="the whole image the VLM filter sees (802,816 px = 1,024 Qwen2.5-VL image tokens)")
    ground_pixels: Optional[int] = Field(
        1024 * 1024, ge=64 * 64,
        description="the image the grounder, the segmenter and 'find similar' get, before their own resize "
                    "(OWLv2 960 px, Grounding DINO 800x1333, Falcon max_dimension, SAM 1024 px); for a model "
                    "that pads to a square (OWLv2, SAM, student) it counts the square of the longest side")
    verify_pixels: Optional[int] = Field(
        256 * QWEN_PATCH_PIXELS, ge=QWEN_PATCH_PIXELS,
        description="each verify crop (200,704 px = 256 Qwen2.5-VL image tokens)")
    max_aspect_ratio: Optional[float] = Field(
        20.0, ge=1,
        description="the longest side over the shortest an image may have: a thinner one is refused before any "
                    "model (OWLv2 and SAM would see a sliver of their padded square)")

    @model_validator(mode="after")
    def _decode_covers_stages(self):
        if self.decode_pixels is not None:
            for name in ("filter_pixels", "ground_pixels"):
                value = getattr(self, name)
                if value is None or value > self.decode_pixels:
                    shown = "null = full resolution" if value is None else value
                    raise ValueError(f"decode_pixels ({self.decode_pixels}) must be at least {name} ({shown}): "
                                     "a stage cannot see more pixels than are decoded")
        return self


TorchDtype = Annotated[Literal[DTYPE_SETTINGS], Field(
    description="torch dtype (pipeline/hardware.py): auto = bf16 where the chip runs it natively and faster, "
                "fp16 on CUDA GPUs without bf16 and on MPS, else fp32; LF_DTYPE sets what auto means")]


class VLMProvider(_Strict):
    kind: Literal["openai", "transformers"] = "openai"
    model: str = "mlx-community/Qwen2.5-VL-3B-Instruct-4bit"
    url: Optional[str] = Field(None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: Optional[str] = Field(None, description="name of the env var holding the server's API key")
    timeout: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0)
    concurrency: int = Field(2, ge=1)
    max_batch: int = Field(8, ge=1, description="crops per forward pass (transformers)")
    device: str = "auto"
    dtype: TorchDtype = "auto"  # transformers only

    @model_validator(mode="after")
    def _url_for_openai(self):
        if self.kind == "openai" and not self.url:
            raise ValueError("provider kind 'openai' needs a url (e.g. http://127.0.0.1:8000/v1)")
        return self


class GrounderProvider(_Strict):
    kind: Literal["falcon", "owlv2", "grounding-dino", "student", "sam3"] = "falcon"
    model: str = "tiiuae/Falcon-Perception"
    device: str = "auto"
    dtype: TorchDtype = "auto"
    backend: Literal["auto", "mlx", "torch"] = Field(
        "auto", description="falcon only: torch (CUDA, or CPU), mlx (Apple silicon); auto picks torch unless "
                            "on Apple silicon without CUDA")
    max_new_tokens: int = Field(64, ge=1, description="falcon only: generation budget per query")
    max_dimension: Optional[int] = Field(
        None, ge=64, description="falcon only: longest image side Falcon encodes (16x16 px per token); "
                                 "default 1024 on a GPU, 512 on a CPU")
    zoom: float = Field(0.0, ge=0, description="student only: refit each box on a window this many times its "
                                               "longer side, seen at the student's input size (0: off; 4 is what "
                                               "benchmarks/loop.py measured best)")

    @model_validator(mode="after")
    def _zoom_for_student(self):
        if self.zoom and self.kind != "student":
            raise ValueError(f"zoom refines the student's boxes; grounder kind {self.kind!r} has none")
        return self

    def identity(self) -> str:
        """The grounder as model_version names it: its kind; a student adds its weights' content hash."""
        if self.kind != "student":
            return self.kind
        from pipeline.weights import weights_tag
        return f"student-{weights_tag(self.model)}"


class SegmenterProvider(_Strict):
    kind: Literal["sam"] = Field("sam", description="the SAM family through transformers (SAM, SAM-HQ, SAM 2)")
    model: str = "facebook/sam-vit-base"
    device: str = "auto"
    dtype: TorchDtype = "auto"
    cache_images: int = Field(4, ge=0, description="images whose embedding is kept (clicks on the same image)")
    always: bool = Field(False, description="segment every box with this model, also when the grounder gives "
                                            "masks (Falcon's own masks are slow on a CPU)")


class SimilarProvider(_Strict):
    kind: Literal["owlv2"] = "owlv2"
    model: str = Field("google/owlv2-base-patch16-ensemble",
                       description="OWLv2 model that answers 'find similar' examples when the grounder is not OWLv2")
    device: str = "auto"
    dtype: TorchDtype = "auto"


class IdentifyProvider(_Strict):
    model: str = "ViT-B-32"
    pretrained: Optional[str] = "laion2b_s34b_b79k"
    min_cosine: float = Field(0.8, ge=-1, le=1)
    min_margin: float = Field(0.05, ge=0, le=2)
    top_k: int = Field(5, ge=1)
    projection: Optional[str] = None  # projection head file (label-factory identify train); None: raw CLIP
    dtype: TorchDtype = "auto"


class Providers(_Strict):
    vlm: VLMProvider = Field(default_factory=lambda: VLMProvider(url="http://127.0.0.1:8000/v1"))
    grounder: GrounderProvider = Field(default_factory=GrounderProvider)
    identify: IdentifyProvider = Field(default_factory=IdentifyProvider)
    segmenter: SegmenterProvider = Field(default_factory=SegmenterProvider,
                                         description="masks for grounders that give none (brush/polygon outputs)")
    similar: Optional[SimilarProvider] = Field(None, description="'find similar' examples (default: the grounder "
                                                                 "when it is OWLv2)")


class RouteBand(_Strict):
    """One label's own band; a missing value is the route-wide one."""
    floor: Optional[float] = Field(None, ge=0, le=1)
    accept: Optional[float] = Field(None, ge=0, le=1)


class Route(_Strict):
    """Student first (README: Routing through the student): the student grounds every image; its boxes scoring
    ``accept`` or more are kept as they are, those between ``floor`` and ``accept`` go to verify, those under
    ``floor`` are dropped; an image with more than ``max_uncertain`` boxes between the two (with verify off: any)
    goes through the whole cascade instead. ``label-factory calibrate --route`` writes the per-label band."""
    student: str = Field(min_length=1, description="the student's weights file (`label-factory train`)")
    device: str = "auto"
    dtype: TorchDtype = "auto"
    accept: float = Field(0.5, ge=0, le=1, description="student score from which a box is kept without verify")
    floor: float = Field(0.1, ge=0, le=1, description="student score under which a box is dropped")
    max_uncertain: int = Field(3, ge=0, description="more boxes than this between floor and accept: the image "
                                                    "goes through the whole cascade")
    per_label: dict[str, RouteBand] = Field(default_factory=dict, description="label -> {floor, accept}")
    zoom: float = Field(0.0, ge=0, description="the student's zoom refinement (providers.grounder.zoom); 0: off")

    @model_validator(mode="after")
    def _floor_under_accept(self):
        for lab in [None, *self.per_label]:
            if self.floor_for(lab) > self.accept_for(lab):
                where = f"per_label.{lab}" if lab else "route"
                raise ValueError(f"{where}: floor ({self.floor_for(lab)}) is above accept ({self.accept_for(lab)})")
        return self

    def accept_for(self, label) -> float:
        own = self.per_label.get(str(label)) if label is not None else None
        return self.accept if own is None or own.accept is None else own.accept

    def floor_for(self, label) -> float:
        own = self.per_label.get(str(label)) if label is not None else None
        return self.floor if own is None or own.floor is None else own.floor

    def provider(self) -> GrounderProvider:
        return GrounderProvider(kind="student", model=self.student, device=self.device, dtype=self.dtype,
                                zoom=self.zoom)

    def identity(self) -> str:
        """The routing student as model_version names it: its weights' content hash."""
        return self.provider().identity()


class VideoSettings(_Strict):
    """How a video task is labelled (pipeline/video/run.py): the grounder on keyframes (scene cuts and every
    ``keyframe_every`` frames), boxes between them from ``between`` every ``detect_every`` frames, ByteTrack
    tying them into tracks, verify and identify once per track on its best crops."""
    keyframe_every: int = Field(30, ge=1, description="frames between grounded keyframes (besides scene cuts)")
    detect_every: int = Field(5, ge=0, description="frames between boxes from `between` (0: keyframes only)")
    between: Optional[GrounderProvider] = Field(
        None, description="the detector between keyframes (e.g. the distilled student); default: the grounder")
    lost_seconds: float = Field(1.5, ge=0, description="how long an unseen track waits to be picked up again")
    min_track_boxes: int = Field(2, ge=1, description="a track seen on fewer detection frames is dropped")
    verify_crops: int = Field(1, ge=1, le=8, description="best crops per track that verify asks about (mean)")
    tolerance: float = Field(2.0, ge=0, description="pixels a Label Studio keyframe interpolation may be off")
    scene_threshold: float = Field(27.0, gt=0, description="PySceneDetect ContentDetector threshold for a cut")


class ProjectConfig(_Strict):
    project_name: str = Field(min_length=1)
    target_object: str = Field(min_length=1)
    description: str = ""
    data_root: str = ""
    label: str = Field("", description="Label Studio label for the target (default: target_object)")
    extra_labels: list[str] = Field(default_factory=list, description="more labels in the generated labeling config")
    buckets: dict[str, list[str]] = Field(default_factory=dict)
    queries: Union[list[str], dict[str, list[str]]] = Field(
        default_factory=list, alias="falcon_queries",
        description="grounding queries; a list (all for `label`) or label -> queries")
    prompts: Prompts = Field(default_factory=Prompts)
    stages: Stages = Field(default_factory=Stages)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    providers: Providers = Field(default_factory=Providers)
    budgets: Budgets = Field(default_factory=Budgets)
    route: Optional[Route] = Field(None, description="student first; None: every image goes through the cascade")
    video: VideoSettings = Field(default_factory=VideoSettings)

    @field_validator("target_object")
    @classmethod
    def _no_braces(cls, v: str) -> str:
        if "{" in v or "}" in v:
            raise ValueError("must not contain '{' or '}': it is substituted into the prompt templates with str.format")
        return v.strip()

    @field_validator("data_root")
    @classmethod
    def _expand_home(cls, v: str) -> str:
        return os.path.expanduser(v)

    @field_validator("buckets")
    @classmethod
    def _bucket_names(cls, v):
        for name, queries in v.items():
            if not name or name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"bucket name {name!r} must be a relative path like 'positive/street'")
            if not queries:
                raise ValueError(f"bucket {name!r} has no search queries")
        return v

    @model_validator(mode="after")
    def _defaults(self):
        if not self.label:
            # the target's label: the first label of a label -> queries mapping, else the target itself
            self.label = next(iter(self.queries)) if isinstance(self.queries, dict) and self.queries \
                else self.target_object
        if not self.data_root:
            self.data_root = f"data/{self.project_name}"
        if not self.queries:
            self.queries = [self.target_object]
        for where, named in (("thresholds", self.thresholds.per_label),
                             ("route", self.route.per_label if self.route else {})):
            unknown = sorted(set(named) - set(self.labels()))
            if unknown:
                raise ValueError(f"{where}.per_label names {unknown}, which are not labels of this project "
                                 f"({', '.join(self.labels())})")
        return self

    # -- derived ------------------------------------------------------------------------
    def query_labels(self) -> dict[str, str]:
        """Grounding query -> Label Studio label."""
        if isinstance(self.queries, dict):
            return {q: lab for lab, qs in self.queries.items() for q in qs}
        return {q: self.label for q in self.queries}

    def labels(self) -> list[str]:
        out = []
        for lab in [self.label, *self.query_labels().values(), *self.extra_labels]:
            if lab not in out:
                out.append(lab)
        return out

    def prompt(self, which: str) -> str:
        return getattr(self.prompts, which).format(target_object=self.target_object)

    def fingerprint(self) -> str:
        """Short hash of everything that changes predictions (for model_version)."""
        keys = {"target_object", "label", "queries", "prompts", "stages", "thresholds", "providers", "budgets", "route"}
        data = self.model_dump(include=keys, mode="json")
        if not data["thresholds"]["per_label"]:  # none: the same fingerprint as before per-label thresholds existed
            del data["thresholds"]["per_label"]
        if self.route is None:  # no routing: the same fingerprint as before routing existed
            del data["route"]
        else:  # the routing student by its weights' hash, its dtype in model_version's own part
            data["route"].pop("dtype", None)
            if not self.route.zoom:  # off: the same fingerprint as before zoom existed
                del data["route"]["zoom"]
            data["route_identity"] = self.route.identity()
        for provider in data["providers"].values():  # the resolved dtype is model_version's own part
            if isinstance(provider, dict):
                provider.pop("dtype", None)
        if not data["providers"]["grounder"]["zoom"]:  # off: the same fingerprint as before zoom existed
            del data["providers"]["grounder"]["zoom"]
        del data["budgets"]["max_aspect_ratio"]  # it refuses tasks, it changes no prediction
        if self.providers.grounder.identity() != self.providers.grounder.kind:  # a student: its weights by hash
            data["grounder_identity"] = self.providers.grounder.identity()
        if self.video != VideoSettings():  # the defaults: the same fingerprint as before video existed
            data["video"] = self.video.model_dump(mode="json")
        blob = json.dumps(data, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _format_errors(path: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def parse_project(data: dict, source: str = "<project>") -> ProjectConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of fields, got {type(data).__name__}")
    data = from_data_label_factory(data, source)   # data-label-factory YAMLs: mapped, ignored keys warned
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(source, e)) from None


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read project file: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None


# Deployment-time overrides (docker-compose, `label-factory up`): the YAML says what to label,
# the environment says where the models live on this machine (declared in pipeline/settings.py, Models).
ENV_OVERRIDES = Models.override_fields()  # LF_* variable -> (provider, key)


def env_overrides(environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The LF_* overrides that are set in ``environ`` (default: the environment now), name -> value."""
    return Models.read(environ).overrides()


def calibration_path(project_path: Union[str, Path]) -> Path:
    """The calibration file next to a project YAML: ``stop-signs.yaml`` -> ``stop-signs.calibration.yaml``."""
    path = Path(project_path)
    return path.with_name(f"{path.stem}.calibration.yaml")


def config_mtime(project_path: Union[str, Path]) -> tuple[int, int]:
    """Modification times of the project YAML and its calibration file (-1: none), to notice either change."""
    out = []
    for p in (Path(project_path), calibration_path(project_path)):
        try:
            out.append(p.stat().st_mtime_ns)
        except OSError:
            out.append(-1)
    return out[0], out[1]


def with_calibration(cfg: ProjectConfig, project_path: Union[str, Path]) -> ProjectConfig:
    """``cfg`` with the thresholds of its calibration file, if there is one: its ``thresholds.filter``
    replaces the YAML's, each label in its ``thresholds.per_label`` gets those thresholds, and each label in its
    ``route.per_label`` that band (a label the project no longer has, or a band for a project without a
    ``route``, is ignored with a warning). Nothing else in the file is read."""
    side = calibration_path(project_path)
    if not side.is_file():
        return cfg
    data = _read_yaml(side) or {}
    th = data.get("thresholds", {}) if isinstance(data, dict) else None
    if not isinstance(th, dict) or set(th) - {"filter", "per_label"}:
        raise ConfigError(f"{side}: thresholds: expected a mapping with 'filter' and/or 'per_label' "
                          "(written by `label-factory calibrate`; delete the file to use the YAML's thresholds)")
    per_label = th.get("per_label") or {}
    if not isinstance(per_label, dict):
        raise ConfigError(f"{side}: thresholds.per_label: expected a mapping of label -> {{verify, grounding}}")
    gone = sorted(set(per_label) - set(cfg.labels()))
    if gone:
        log.warning("%s: ignoring thresholds for %s: not labels of %s any more", side, gone, project_path)
    merged = cfg.thresholds.model_dump()
    merged["per_label"].update({lab: v for lab, v in per_label.items() if lab not in gone})
    if "filter" in th:
        merged["filter"] = th["filter"]
    try:
        update = {"thresholds": Thresholds.model_validate(merged)}
    except ValidationError as e:
        raise ConfigError(_format_errors(f"{side}: thresholds", e)) from None
    bands = (data.get("route") or {}).get("per_label") or {}
    if bands and cfg.route is None:
        log.warning("%s: ignoring route.per_label: %s has no route section", side, project_path)
    elif bands:
        route = cfg.route.model_dump()
        route["per_label"].update({lab: v for lab, v in bands.items() if lab in cfg.labels()})
        try:
            update["route"] = Route.model_validate(route)
        except ValidationError as e:
            raise ConfigError(_format_errors(f"{side}: route", e)) from None
    return cfg.model_copy(update=update)


def load_project(path: Union[str, Path], environ: Optional[Mapping[str, str]] = None) -> ProjectConfig:
    """The one way from a project YAML to settings, for every entry point (backend, ``run``,
    ``predict``, ``import``, ``identify``, ``up``): the YAML, validated (errors name the file and
    the field), with the thresholds of its calibration file (``with_calibration``), then the LF_*
    overrides set in ``environ`` (default: the environment now) on its providers, validated again (errors
    name the variables)."""
    path = Path(path)
    cfg = with_calibration(parse_project(_read_yaml(path), str(path)), path)
    overrides = env_overrides(environ)
    if not overrides:
        return cfg
    data = cfg.model_dump(mode="json", by_alias=False)
    for var, value in overrides.items():
        provider, key = ENV_OVERRIDES[var]
        data["providers"][provider][key] = value
    return parse_project(data, f"{path} with {', '.join(sorted(overrides))} from the environment")


