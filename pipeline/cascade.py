"""The cascade as one object: image in, detections + per-stage timings + raw model answers out.

``run``: filter -> ground -> verify -> segment (with ``masks``) -> identify; with a ``route`` in the project,
the student first (pipeline/route.py: its sure boxes kept, its unsure ones verified, an image it is unsure
about through the whole cascade).  The interactive
variants start from what a person gave instead of the grounder: ``run_on_boxes`` (rectangles
they drew: scored by verify, with ``masks`` refined to the object's mask and its box),
``run_on_clicks`` (clicks on one object: its mask and box from the segmenter) and
``run_similar`` (an example box: more objects like it, then the usual cascade)."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image

from pipeline import answer_cache, cost, route, stages
from pipeline.config import LabelThresholds, ProjectConfig, Thresholds
from pipeline.detections import Detections
from pipeline.images import Photo, open_photo, refuse_thin
from pipeline.providers.base import VLM, Grounder, ProviderError, Segmenter, YesNo
from pipeline.weights import weights_sha256

log = logging.getLogger(__name__)

# An identify hook: (image, detections) -> None, sets detections' identities; ``image`` is a Photo (cut
# boxes from it with pipeline.crops.crop, which takes original-pixel boxes).
Identifier = Callable[[Photo, Detections], None]
AnyImage = Union[Image.Image, Photo]


@dataclass
class PipelineResult:
    width: int
    height: int
    detections: Detections
    filter_answer: Optional[YesNo] = None
    passed_filter: bool = True
    timings: dict = field(default_factory=dict)  # stage -> seconds
    verify_answers: list = field(default_factory=list)
    note: str = ""  # why nothing was grounded (filtered out, ...)
    route: Optional[dict] = None  # routed through the student: route.Decision.to_dict()
    thresholds: Optional[Thresholds] = None  # what its decisions were made against, when not the project's

    def to_record(self) -> dict:
        return {**({"route": self.route} if self.route is not None else {}),
            "width": self.width, "height": self.height,
            "passed_filter": self.passed_filter,
            "filter": self.filter_answer.to_json() if self.filter_answer else None,
            "note": self.note,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "detections": self.detections.records(),
            "verify_answers": self.verify_answers,
        }


class Pipeline:
    """filter -> ground -> verify (-> identify), driven by a ProjectConfig.

    Providers are taken from the process-wide registry unless injected, so constructing a
    Pipeline per request is cheap: weights load once per process. Either way their answers go
    through the answer cache (pipeline/answer_cache.py; off with LF_ANSWER_CACHE=0)."""

    def __init__(self, config: ProjectConfig, vlm: Optional[VLM] = None, grounder: Optional[Grounder] = None,
                 identifier: Optional[Identifier] = None, segmenter: Optional[Segmenter] = None,
                 finder: Optional[Grounder] = None, student: Optional[Grounder] = None):
        self.config = config
        self._vlm = None if vlm is None else answer_cache.CachedVLM.around(vlm)
        self._grounder = None if grounder is None else answer_cache.CachedGrounder.around(grounder)
        self._student = None if student is None else answer_cache.CachedGrounder.around(student)
        self.identifier = identifier
        self._segmenter = segmenter
        self._finder = finder

    @property
    def vlm(self) -> VLM:
        if self._vlm is None:
            from pipeline.providers.registry import get_vlm
            self._vlm = answer_cache.CachedVLM.around(get_vlm(self.config.providers.vlm))
        return self._vlm

    @property
    def grounder(self) -> Grounder:
        if self._grounder is None:
            from pipeline.providers.registry import get_grounder
            cfg = self.config.providers.grounder
            self._grounder = answer_cache.CachedGrounder.around(get_grounder(cfg), identity_extra=cfg.identity)
        return self._grounder

    @property
    def student(self) -> Grounder:
        """The routing student (``route.student``), loaded on first use."""
        if self._student is None:
            from pipeline.providers.registry import get_grounder
            cfg = self.config.route.provider()
            self._student = answer_cache.CachedGrounder.around(get_grounder(cfg), identity_extra=cfg.identity)
        return self._student

    @property
    def segmenter(self) -> Segmenter:
        """``providers.segmenter`` (masks for boxes and clicks), loaded on first use."""
        if self._segmenter is None:
            from pipeline.providers.registry import get_segmenter
            self._segmenter = get_segmenter(self.config.providers.segmenter)
        return self._segmenter

    @property
    def finder(self) -> Grounder:
        """What answers "find similar": the grounder when it can (OWLv2), else ``providers.similar``."""
        if self._finder is None:
            if self.config.stages.ground and getattr(self.grounder, "finds_similar", False):
                self._finder = self.grounder
            elif self.config.providers.similar is not None:
                from pipeline.config import GrounderProvider
                from pipeline.providers.registry import get_grounder
                sim = self.config.providers.similar
                self._finder = get_grounder(GrounderProvider(kind=sim.kind, model=sim.model, device=sim.device,
                                                             dtype=sim.dtype))
            else:
                raise ProviderError(f"'find similar' needs an OWLv2 model: the grounder is "
                                    f"{self.config.providers.grounder.kind!r}; set providers.similar "
                                    "(kind: owlv2, model: google/owlv2-base-patch16-ensemble or a local copy) "
                                    "in the project YAML")
        return self._finder

    def cache_counts(self) -> dict:
        """Answers the answer cache gave ("hits") and the models gave ("misses") so far."""
        return answer_cache.counts(self._vlm, self._grounder)

    def load(self) -> "Pipeline":
        """Load the providers the enabled stages need (at start-up rather than on first request).

        First says how long an image is expected to take here (a warning when it is a minute or more)."""
        try:
            cost.announce(self.config)
        except Exception as e:  # noqa: BLE001 - an estimate must never stop the models from loading
            log.info("no cost estimate: %s: %s", type(e).__name__, e)
        st = self.config.stages
        if st.filter or st.verify:
            _ = self.vlm
        if st.ground:
            _ = self.grounder
        if self.config.route is not None:
            _ = self.student
        return self

    def describe(self) -> dict:
        st = self.config.stages
        out = {"stages": st.model_dump()}
        if st.filter or st.verify:
            out["vlm"] = self.vlm.describe()
        if st.ground:
            out["grounder"] = self.grounder.describe()
        if self.config.route is not None:
            out["route"] = {"student": self.student.describe(), **self.config.route.model_dump(exclude={"student"})}
        return out

    # -- images ---------------------------------------------------------------------------
    def open(self, source: Union[str, Path, bytes]) -> Photo:
        """Decode an image file (or its bytes) once, at this project's working resolution (``photo``)."""
        return self.photo(open_photo(source, self.config.budgets.decode_pixels))

    def photo(self, image: AnyImage) -> Photo:
        """``image`` at this project's working resolution (a no-op for what ``open`` returned). Every run
        starts here: an image thinner than ``budgets.max_aspect_ratio`` is refused (``ImageShapeError``)
        before any model sees it."""
        refuse_thin(image.width, image.height, self.config.budgets.max_aspect_ratio)
        return Photo.of(image, self.config.budgets.decode_pixels)

    # -- runs ---------------------------------------------------------------------------
    def run(self, image: AnyImage, queries: Optional[Mapping[str, str]] = None,
            skip_filter: bool = False, masks: bool = False) -> PipelineResult:
        """Run the enabled stages on one (EXIF-corrected) image; boxes and masks come back in its original
        pixels, each stage having seen at most its budget (``budgets`` in the YAML).

        ``queries`` (query -> label) replaces the YAML's grounding queries, e.g. a text prompt
        typed in Label Studio; ``skip_filter`` is for such interactive calls. ``masks``: every kept
        box gets its mask (from the grounder when it segments, else the segmenter). With a ``route`` the student
        goes first (``_run_routed``), except for typed queries."""
        image = self.photo(image)
        if self.config.route is not None and not queries:
            if self._student is not None or weights_sha256(self.config.route.student) is not None:
                return self._run_routed(image, masks)
            res = self._run_cascade(image, queries, skip_filter, masks)  # nothing trained yet: the cascade answers
            res.route = {"path": route.CASCADE, "accepted": 0, "band": 0, "dropped": 0,
                         "why": f"no student at {self.config.route.student} yet (Start Training or label-factory "
                                "train writes it)"}
            return res
        return self._run_cascade(image, queries, skip_filter, masks)

    def _run_cascade(self, image: Photo, queries: Optional[Mapping[str, str]], skip_filter: bool,
                     masks: bool) -> PipelineResult:
        cfg, th, budget = self.config, self.config.thresholds, self.config.budgets
        res = PipelineResult(image.width, image.height, Detections.empty())
        if cfg.stages.filter and not skip_filter:
            with timed(res.timings, "filter"):
                res.passed_filter, res.filter_answer = stages.filter_image(self.vlm, image, cfg.prompt("filter"),
                                                                           th.filter, budget.filter_pixels)
            if not res.passed_filter:
                res.note = f"filter: P(yes)={res.filter_answer.p_yes:.3f} < {th.filter}"
                cost.observed.add(res.timings)
                return res
        if cfg.stages.ground:
            with timed(res.timings, "ground"):
                own = masks and not cfg.providers.segmenter.always  # the grounder's own masks, when it has them
                res.detections = stages.ground(self.grounder, image, queries or cfg.query_labels(), th, masks=own,
                                               max_pixels=budget.ground_pixels)
        self._finish(image, res, masks=masks)
        if not skip_filter and not queries:
            cost.observed.add(res.timings)  # the first images' real seconds, logged beside the estimate
        return res

    def _run_routed(self, image: Photo, masks: bool) -> PipelineResult:
        """The student first (pipeline/route.py): its boxes under their floor dropped, over their accept kept,
        the band verified, or, when the student is unsure of the image, the whole cascade."""
        cfg, rt = self.config, self.config.route
        res = PipelineResult(image.width, image.height, Detections.empty())
        at_floor = cfg.thresholds.model_copy(update={"grounding": rt.floor, "per_label": {
            lab: LabelThresholds(grounding=rt.floor_for(lab)) for lab in cfg.labels()}})
        with timed(res.timings, "student"):
            dets = stages.ground(self.student, image, {lab: lab for lab in cfg.labels()}, at_floor,
                                 max_pixels=cfg.budgets.ground_pixels)
        decision = route.decide(dets, rt, verify_on=cfg.stages.verify)
        if decision.path == route.CASCADE:
            full = self._run_cascade(image, None, False, masks)
            full.timings = {"student": res.timings["student"], **full.timings}
            full.route = decision.to_dict()
            return full
        dets.mark(np.isin(np.arange(len(dets)), decision.accepted), "route")
        rest = np.setdiff1d(np.arange(len(dets)), np.r_[decision.accepted, decision.band])
        accepted, band = dets[decision.accepted], dets[decision.band]
        if len(band):
            questions = stages.verify_questions(set(band.labels.astype(str)), cfg.prompts.verify, cfg.label,
                                                cfg.target_object)
            with timed(res.timings, "verify"):
                answers = stages.verify(self.vlm, image, band, questions, cfg.thresholds, cfg.thresholds.crop_padding,
                                        max_pixels=cfg.budgets.verify_pixels)
            res.verify_answers = [{**a, "box": a["box"] + len(accepted)} for a in answers]  # index in the result
        res.detections = Detections.merge([accepted, band, dets[rest]])
        res.route = decision.to_dict()
        res.thresholds = route.certainty_thresholds(rt, cfg.thresholds)
        self._finish(image, res, masks=masks, verify=False)
        cost.observed.add(res.timings)
        return res

    def run_on_boxes(self, image: AnyImage, xyxy: Sequence, labels: Sequence[str],
                     masks: bool = False) -> PipelineResult:
        """Interactive mode: rectangles a person drew (original pixels), scored by verify (never dropped)
        and identified. With ``masks`` each is refined: its mask from the segmenter's box prompt, its box
        the mask's."""
        image = self.photo(image)
        res = PipelineResult(image.width, image.height, stages.user_boxes(xyxy, labels))
        if masks and len(res.detections):
            with timed(res.timings, "segment"):
                found, boxes = stages.masks_for_boxes(self.segmenter, image, res.detections.xyxy,
                                                      self.config.budgets.ground_pixels)
            empty = ~(boxes[:, 2:] > boxes[:, :2]).all(axis=1)
            refined = np.where(empty[:, None], res.detections.xyxy, boxes)
            res.detections = stages.user_boxes(refined, labels, masks=found)
        self._finish(image, res, masks=masks, user=True)
        return res

    def run_on_clicks(self, image: AnyImage, points: Sequence, positive: Sequence[bool],
                      label: str) -> PipelineResult:
        """Interactive mode: clicks on one object (original pixels; ``positive`` False: "not this part") ->
        its mask and the box around it, scored by verify (never dropped) and identified."""
        image = self.photo(image)
        res = PipelineResult(image.width, image.height, Detections.empty())
        with timed(res.timings, "segment"):
            mask, box = stages.mask_for_points(self.segmenter, image, points, positive,
                                               self.config.budgets.ground_pixels)
        if mask is None:
            res.note = "segment: no object under the click(s)"
            return res
        res.detections = stages.user_boxes([box], [label], masks=[mask])
        self._finish(image, res, masks=True, user=True)
        return res

    def run_similar(self, image: AnyImage, example_xyxy, label: str, masks: bool = False) -> PipelineResult:
        """Interactive mode, "find more like this": boxes that look like the example a person drew (the
        example itself left out), then verify, segment and identify as in ``run``."""
        image = self.photo(image)
        res = PipelineResult(image.width, image.height, Detections.empty())
        with timed(res.timings, "similar"):
            res.detections = stages.similar(self.finder, image, example_xyxy, label, self.config.thresholds,
                                            self.config.budgets.ground_pixels)
        self._finish(image, res, masks=masks)
        if not len(res.detections.active_index()) and not res.note:
            res.note = "similar: nothing like the example above the thresholds"
        return res

    def _finish(self, image: Photo, res: PipelineResult, masks: bool = False, user: bool = False,
                verify: bool = True) -> None:
        """verify -> segment -> identify on the kept boxes. ``user``: boxes a person gave, always verified,
        never dropped by a score. ``verify`` False: verified already (routing)."""
        cfg, th = self.config, self.config.thresholds
        dets = res.detections
        if verify and (cfg.stages.verify or user) and len(dets.active_index()):
            questions = stages.verify_questions(set(dets.labels.astype(str)), cfg.prompts.verify, cfg.label,
                                                cfg.target_object)
            with timed(res.timings, "verify"):
                res.verify_answers = stages.verify(self.vlm, image, dets, questions, th, th.crop_padding,
                                                   drop=not user, max_pixels=cfg.budgets.verify_pixels)
        if masks and (dets.kept & ~dets.has_mask()).any():
            with timed(res.timings, "segment"):
                stages.segment(self._segmenter_for_missing(), image, dets, cfg.budgets.ground_pixels)
        if cfg.stages.identify and self.identifier is not None and len(dets.active_index()):
            with timed(res.timings, "identify"):
                self.identifier(image, dets)

    def _segmenter_for_missing(self) -> Optional[Segmenter]:
        try:
            return self.segmenter
        except ProviderError:
            if self.config.stages.ground and getattr(self.grounder, "gives_masks", False):
                return None  # Falcon's own masks only; a box it gave none is dropped with the reason
            raise


@contextmanager
def timed(timings: dict, stage: str):
    """Adds the seconds the block took to ``timings[stage]`` (a stage can run more than once per image or video)."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t
