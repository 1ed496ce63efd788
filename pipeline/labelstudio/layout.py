"""A labeling config read once: which image, which output controls, where names and prompts go.

``Layout.from_config(label_interface)`` is the one answer to "where in this labeling config does a
result go"; ``Layout.results(detections, width, height)`` is the one way from ``Detections`` to
Label Studio results (batch ``run``, the backends, the ``predict`` job).

What a config may hold, on its image (the first ``<Image>`` with an output control):

* outputs, one region per kept box in each: ``RectangleLabels``/``Rectangle`` (boxes),
  ``BrushLabels``/``Brush`` (masks as RLE), ``PolygonLabels``/``Polygon`` (mask outlines).
  ``model_skip="true"`` on a control, or ``smartOnly="true"`` (a tool that only prompts the
  model), keeps predictions out of it.
* names (identify): a per-region ``TextArea`` takes any name, a per-region ``Choices`` the names
  among its choices; else a name that is one of an output's labels becomes the region's label.
* inputs for interactive mode: a ``TextArea`` that is not per-region (a text prompt),
  ``KeyPointLabels``/``KeyPoint`` (clicks to segment), a ``RectangleLabels`` with
  ``find_similar="true"`` (an example: find more like it).

A config with no output on an image but a ``<VideoRectangle>`` on a ``<Video>`` (labels from the
``<Labels>`` on the same video) is a video layout (``media == "video"``): one region per track
(``pipeline.labelstudio.video``).

Other controls on the image (ellipses, bitmasks, magic wand, vectors, per-image choices, ...) get
nothing from label-factory; a config whose image has no output control at all is refused
(``UnsupportedConfig``) with a message that says what it has and what label-factory fills.
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from pipeline.detections import Detections
from pipeline.labelstudio.controls import NAMES, OUTPUTS, Control, OutputControl, PerRegion, VideoRectangles, attr_true

log = logging.getLogger(__name__)

SUPPORTED_OUTPUTS = "RectangleLabels, Rectangle, BrushLabels, Brush, PolygonLabels, Polygon"
CLICK_TAGS = ("keypointlabels", "keypoint")
# Image controls label-factory never fills, and why (for the refusal message and the log).
NOT_FILLED = {
    "ellipselabels": "ellipses", "ellipse": "ellipses", "bitmasklabels": "bitmasks", "bitmask": "bitmasks",
    "magicwand": "magic-wand masks", "vectorlabels": "vectors", "vector": "vectors", "ocrlabels": "OCR regions",
    "labels": "a generic <Labels> (pair the image with RectangleLabels, BrushLabels or PolygonLabels instead)",
    "keypointlabels": "keypoints (they are clicks that ask for a mask, not an output)",
    "keypoint": "keypoints (they are clicks that ask for a mask, not an output)",
    "choices": "per-image choices (classification; perRegion=\"true\" choices take identities)",
}


class UnsupportedConfig(ValueError):
    """The labeling config has no place for what label-factory predicts; the message says why."""


_layouts: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # LabelInterface -> its Layout


@dataclass
class Layout:
    image: str  # the <Image> object's name (to_name of every result)
    data_key: str  # task["data"] key of its URL
    outputs: list[OutputControl]  # geometry controls that get predictions
    names: list[PerRegion] = field(default_factory=list)  # per-region TextArea / Choices, in order of preference
    prompt: Optional[str] = None  # a TextArea (not per-region) on the image: typed text prompts
    clicks: list[Control] = field(default_factory=list)  # KeyPointLabels / KeyPoint: clicks to segment
    examples: list[Control] = field(default_factory=list)  # RectangleLabels find_similar="true"
    prompt_boxes: list[Control] = field(default_factory=list)  # rectangle tools that only prompt (smartOnly)
    ignored: dict = field(default_factory=dict)  # control name -> why it gets nothing
    media: str = "image"  # "video": a <Video> whose <VideoRectangle> gets one region per track

    # -- reading a config -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, label_interface) -> "Layout":
        """The layout of a parsed labeling config, read once per LabelInterface object (the contract keeps
        one per config text); ``UnsupportedConfig`` when label-factory has no place for its boxes there."""
        if label_interface is None:
            raise UnsupportedConfig("no labeling config: Label Studio sent none and none is cached for this project")
        hit = _layouts.get(label_interface)
        if hit is None:
            hit = _layouts[label_interface] = cls._read(label_interface)
        return hit

    @classmethod
    def _read(cls, label_interface) -> "Layout":
        if label_interface is None:
            raise UnsupportedConfig("no labeling config: Label Studio sent none and none is cached for this project")
        images = [o for o in label_interface.objects if o.tag.lower() == "image"]
        video = _read_video(label_interface) if not any(
            _output_class(c) for img in images for c in label_interface.controls if img.name in (c.to_name or [])) \
            else None
        if video is not None:
            return video
        if not images:
            raise UnsupportedConfig("the labeling config has no <Image> and no <VideoRectangle> on a <Video>: "
                                    "label-factory labels images and tracks in videos")
        on = {img.name: [c for c in label_interface.controls if img.name in (c.to_name or [])] for img in images}
        usable = [img for img in images if any(_output_class(c) for c in on[img.name])]
        if not usable:
            raise UnsupportedConfig(_refusal(images, on))
        image = usable[0]
        lay = cls(image.name, str(image.value or "$image").lstrip("$"), [])
        for other in images:
            if other is not image and on[other.name]:
                lay.ignored.update({c.name: f"on another image ({other.name!r})" for c in on[other.name]})
        for c in on[image.name]:
            tag = c.tag.lower()
            out = _output_class(c)
            if out is not None and attr_true(c, "find_similar"):
                lay.examples.append(Control(c))
            elif out is not None and attr_true(c, "smartOnly"):
                lay.prompt_boxes.append(Control(c))
            elif out is not None and attr_true(c, "model_skip"):
                lay.ignored[c.name] = "model_skip=\"true\""
            elif out is not None:
                lay.outputs.append(out(c))
            elif tag in CLICK_TAGS:
                lay.clicks.append(Control(c))
            elif (name := next((n for n in NAMES if n.matches(c)), None)) is not None:
                lay.names.append(name(c))
            elif tag == "textarea" and lay.prompt is None:
                lay.prompt = c.name
            else:
                lay.ignored[c.name] = NOT_FILLED.get(tag, f"<{c.tag}> is not an output label-factory fills")
        lay.names.sort(key=lambda n: NAMES.index(type(n)))  # TextArea before Choices
        if not lay.outputs:
            raise UnsupportedConfig(f"every output control on <Image name={image.name!r}> is switched off "
                                    f"({', '.join(f'{n}: {why}' for n, why in lay.ignored.items())}): "
                                    f"nothing to put predictions in")
        if lay.ignored:
            log.info("labeling config: %s get nothing from label-factory (%s)", ", ".join(lay.ignored),
                     "; ".join(f"{n}: {why}" for n, why in lay.ignored.items()))
        return lay

    @property
    def needs_masks(self) -> bool:
        """A brush or polygon output: the pipeline must give every kept box a mask."""
        return any(o.needs_masks for o in self.outputs)

    def labels(self) -> list[str]:
        """Every label of the output controls, in order."""
        return list(dict.fromkeys(lab for o in self.outputs for lab in o.labels))

    def label_for(self, label: str) -> Optional[str]:
        """The first output label a pipeline label maps to (alias / case-insensitive), None when none."""
        return next((m for o in self.outputs if o.labeled and (m := o.label_for(label))), None)

    def control(self, name: str) -> Optional[Control]:
        for c in [*self.outputs, *self.names, *self.clicks, *self.examples, *self.prompt_boxes]:
            if c.name == name:
                return c
        return None

    # -- Detections -> results ------------------------------------------------------------------
    def results(self, dets: Detections, width: int, height: int) -> tuple[list[dict], dict[str, int]]:
        """Results for the kept boxes, and per pipeline label the number of kept boxes that got no region
        (their label is in no output control: the caller logs it)."""
        out: list[dict] = []
        dropped: dict[str, int] = {}
        scores = dets.final_scores()
        for i in dets.active_index():
            label = str(dets.labels[i])
            own = None if np.isnan(scores[i]) else float(scores[i])
            regions = self._box_results(dets, int(i), label, own, width, height)
            if not regions:
                dropped[label] = dropped.get(label, 0) + 1
            out += regions
        return out, dropped

    def prediction(self, dets: Detections, width: int, height: int, model_version: str,
                   score: Optional[float] = None) -> tuple[dict, dict]:
        """A Label Studio prediction for one task (``result``, ``score``, ``model_version``) and the dropped
        labels (``results``). Its score is ``score`` (the cascade's: the task's certainty, pipeline/certainty.py),
        else the mean score of its regions (not of their names), 0 when none has one."""
        results, dropped = self.results(dets, width, height)
        if score is None:
            outputs = {o.name for o in self.outputs}
            scores = [r["score"] for r in results if "score" in r and r["from_name"] in outputs]
            score = float(np.mean(scores)) if scores else 0.0
        return {"result": results, "score": float(score), "model_version": model_version}, dropped

    def regions(self, prediction: dict) -> int:
        """How many regions (not names) a prediction of this layout holds."""
        outputs = {o.name for o in self.outputs}
        return sum(1 for r in prediction.get("result") or [] if r.get("from_name") in outputs)

    def _box_results(self, dets: Detections, i: int, label: str, own: Optional[float], width: int,
                     height: int) -> list[dict]:
        m = dets.identities[i]
        name = m.label if m is not None and getattr(m, "known", False) else None
        cosine = None if m is None or np.isnan(m.cosine) else float(m.cosine)
        named_by = next((n for n in self.names if name and n.takes(name)), None)
        out = []
        for o in self.outputs:
            on_label = bool(name) and named_by is None and o.labeled and o.label_for(name) is not None
            lab = o.label_for(name) if on_label else o.label_for(label)
            if o.labeled and lab is None:
                continue
            score = cosine if on_label or own is None else own
            region = o.result(dets, i, lab, width, height, score)
            if region is None:
                continue
            if m is not None:
                region["meta"] = {"text": [_meta(m, cosine, own)]}
            out.append(region)
            if named_by is not None:
                out.append(named_by.result(region, o.geometry(region), name, cosine))
        if name and named_by is None and out and not any(o.labeled and o.label_for(name) for o in self.outputs):
            log.info("identity %r has no place in the labeling config (no per-region TextArea/Choices, no such "
                     "label in %s): the region keeps its label", name, ", ".join(map(repr, self.outputs)))
        return out


def _meta(m, cosine: Optional[float], own: Optional[float]) -> str:
    """What the index answered (also for "unknown"), shown as the region's meta text."""
    margin = None if np.isnan(m.margin) else round(float(m.margin), 4)
    text = f"{m.label} cos={None if cosine is None else round(cosine, 3)} margin={margin}"
    return text + (f" box={round(own, 3)}" if own is not None else "")


def _read_video(label_interface) -> Optional[Layout]:
    """The layout of the first <Video> with a <VideoRectangle> (None when there is none)."""
    for video in (o for o in label_interface.objects if o.tag.lower() == "video"):
        on = [c for c in label_interface.controls if video.name in (c.to_name or [])]
        boxes = [c for c in on if VideoRectangles.matches(c) and not attr_true(c, "model_skip")]
        if not boxes:
            continue
        labels = next((c for c in on if c.tag.lower() == "labels"), None)
        lay = Layout(video.name, str(video.value or "$video").lstrip("$"), [VideoRectangles(boxes[0], labels)],
                     media="video")
        lay.ignored.update({c.name: "label-factory fills the first <VideoRectangle> of a video"
                            for c in on if c is not boxes[0] and c is not labels})
        return lay
    return None


def _output_class(control) -> Optional[type[OutputControl]]:
    return next((o for o in OUTPUTS if o.matches(control)), None)


def _refusal(images: Sequence, on: dict) -> str:
    found = [f"<{c.tag} name={c.name!r}> ({NOT_FILLED.get(c.tag.lower(), 'not an output label-factory fills')})"
             for img in images for c in on[img.name]]
    what = "; ".join(found) if found else "no control tags on it"
    return (f"the labeling config has no output label-factory can fill on its image ({what}). "
            f"label-factory fills {SUPPORTED_OUTPUTS} on an <Image> "
            "(generate one with `label-factory config --project P [--masks brush|polygon]`)")
