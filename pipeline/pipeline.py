"""The cascade as one object: image in, detections + per-stage timings + raw model answers out."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from PIL import Image

from pipeline import stages
from pipeline.config import ProjectConfig
from pipeline.detections import Detections
from pipeline.providers.base import VLM, Grounder, YesNo

log = logging.getLogger(__name__)

# An identify hook: (image, detections) -> None, adds per-box data to detections.extra.
Identifier = Callable[[Image.Image, Detections], None]


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

    def to_record(self) -> dict:
        return {
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
    Pipeline per request is cheap: weights load once per process."""

    def __init__(self, config: ProjectConfig, vlm: Optional[VLM] = None, grounder: Optional[Grounder] = None,
                 identifier: Optional[Identifier] = None):
        self.config = config
        self._vlm = vlm
        self._grounder = grounder
        self.identifier = identifier

    @property
    def vlm(self) -> VLM:
        if self._vlm is None:
            from pipeline.providers.registry import get_vlm
            self._vlm = get_vlm(self.config.providers.vlm)
        return self._vlm

    @property
    def grounder(self) -> Grounder:
        if self._grounder is None:
            from pipeline.providers.registry import get_grounder
            self._grounder = get_grounder(self.config.providers.grounder)
        return self._grounder

    def load(self) -> "Pipeline":
        """Load the providers the enabled stages need (at start-up rather than on first request)."""
        st = self.config.stages
        if st.filter or st.verify:
            _ = self.vlm
        if st.ground:
            _ = self.grounder
        return self

    def describe(self) -> dict:
        st = self.config.stages
        out = {"stages": st.model_dump()}
        if st.filter or st.verify:
            out["vlm"] = self.vlm.describe()
        if st.ground:
            out["grounder"] = self.grounder.describe()
        return out

    # -- runs ---------------------------------------------------------------------------
    def run(self, image: Image.Image, queries: Optional[Mapping[str, str]] = None,
            skip_filter: bool = False) -> PipelineResult:
        """Run the enabled stages on one (EXIF-corrected, RGB) image.

        ``queries`` (query -> label) replaces the YAML's grounding queries, e.g. a text prompt
        typed in Label Studio; ``skip_filter`` is for such interactive calls."""
        cfg, th = self.config, self.config.thresholds
        res = PipelineResult(image.width, image.height, Detections.empty())
        if cfg.stages.filter and not skip_filter:
            with _timed(res, "filter"):
                res.passed_filter, res.filter_answer = stages.filter_image(self.vlm, image, cfg.prompt("filter"),
                                                                           th.filter)
            if not res.passed_filter:
                res.note = f"filter: P(yes)={res.filter_answer.p_yes:.3f} < {th.filter}"
                return res
        if cfg.stages.ground:
            with _timed(res, "ground"):
                res.detections = stages.ground(self.grounder, image, queries or cfg.query_labels(), th)
        self._verify_and_identify(image, res)
        return res

    def run_on_boxes(self, image: Image.Image, xyxy: Sequence, labels: Sequence[str]) -> PipelineResult:
        """Interactive mode: verify (and identify) rectangles a person drew."""
        res = PipelineResult(image.width, image.height, stages.user_boxes(xyxy, labels))
        self._verify_and_identify(image, res, force_verify=True)
        return res

    def _verify_and_identify(self, image: Image.Image, res: PipelineResult, force_verify: bool = False) -> None:
        cfg, th = self.config, self.config.thresholds
        dets = res.detections
        if (cfg.stages.verify or force_verify) and len(dets.active_index()):
            questions = stages.verify_questions(set(dets.labels.astype(str)), cfg.prompts.verify, cfg.label,
                                                cfg.target_object)
            with _timed(res, "verify"):
                res.verify_answers = stages.verify(self.vlm, image, dets, questions, th.verify, th.crop_padding)
        if cfg.stages.identify and self.identifier is not None and len(dets.active_index()):
            with _timed(res, "identify"):
                self.identifier(image, dets)


@contextmanager
def _timed(res: PipelineResult, stage: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        res.timings[stage] = res.timings.get(stage, 0.0) + time.perf_counter() - t
