"""The cascade with masks, and its interactive variants, on a constructed scene with providers whose
answers are known (the real providers have their own tests): every kept box gets its mask after verify,
verify's score and identify's match travel with it, drawn boxes are refined, clicks give one object,
"find similar" leaves the example out."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.cascade import Pipeline
from pipeline.config import parse_project
from pipeline.detections import Detections
from pipeline.identify.index import Match
from pipeline.providers.base import Grounder, ProviderError
from tests.doubles.providers import ColourSegmenter, ScriptedFinder, ScriptedGrounder, ScriptedVLM, red_fraction

RED = (220, 20, 20)


def scene():
    """A red disc of radius 40 at (70, 90) and a blue square, on grey (320 x 240)."""
    im = Image.new("RGB", (320, 240), (200, 200, 200))
    d = ImageDraw.Draw(im)
    d.ellipse((30, 50, 110, 130), fill=RED)
    d.rectangle((180, 80, 290, 190), fill=(20, 20, 220))
    return im


def red_pixels():
    return (np.abs(np.asarray(scene()).astype(int) - RED).sum(-1) == 0)


def config(**over):
    base = {"project_name": "t", "target_object": "stop sign", "label": "Stop Sign",
            "stages": {"filter": False, "identify": True},
            "providers": {"vlm": {"kind": "transformers", "model": "x"}, "grounder": {"kind": "owlv2", "model": "y"}}}
    base.update(over)
    return parse_project(base)


def seeing_red(image, question):
    return min(1.0, red_fraction(image) * 4)


class Names:
    """identify hook: every kept box is the "Pot Of Greed" card, cosine 0.9."""

    def __init__(self):
        self.seen = []

    def __call__(self, image, dets):
        idx = dets.active_index()
        self.seen.append(len(idx))
        dets.set_identities(idx, [Match("Pot Of Greed", "Pot Of Greed", None, 0.9, 0.3, True) for _ in idx])


BOXES = [([25, 45, 115, 135], 0.6, "stop sign"), ([180, 80, 290, 190], 0.5, "stop sign")]


def pipeline(**kw):
    seg = kw.pop("segmenter", ColourSegmenter())
    p = Pipeline(config(**kw), vlm=ScriptedVLM(seeing_red), grounder=ScriptedGrounder(BOXES), identifier=Names(),
                 segmenter=seg)
    return p, seg


def test_run_with_masks_segments_only_the_boxes_verify_kept():
    p, seg = pipeline()
    res = p.run(scene(), masks=True)
    d = res.detections
    assert d.kept.tolist() == [True, False]  # the blue square fails verify
    assert seg.box_calls == [1]  # one batch, only for the kept box
    assert (d.mask(0) == red_pixels()).all() and d.mask_areas()[1] == 0
    assert d.verify_scores[0] > 0.5 and d.identities[0].label == "Pot Of Greed"  # score and name travel with it
    assert list(res.timings) == ["ground", "verify", "segment", "identify"]
    assert d.stage.tolist() == ["segment", "verify"]


def test_run_without_masks_loads_no_segmenter():
    p, seg = pipeline()
    res = p.run(scene())
    assert seg.box_calls == [] and not res.detections.has_mask().any()


def test_a_kept_box_whose_mask_is_empty_is_dropped_with_the_reason():
    class Blind(ColourSegmenter):
        def masks_for_boxes(self, image, xyxy):
            return np.zeros((len(xyxy), image.height, image.width), bool)
    p, _ = pipeline(segmenter=Blind())
    d = p.run(scene(), masks=True).detections
    assert not d.kept.any() and d.reason[0] == "segment: empty mask for the box"


class MaskingGrounder(Grounder):
    """Segments as it grounds (like Falcon): the red disc with its mask, a second box without one."""
    name = "masking"
    gives_masks = True

    def boxes(self, image, queries):
        raise AssertionError("segment() must be used when masks are asked for")

    def segment(self, image, queries):
        return Detections(xyxy=[[30, 50, 110, 130], [180, 80, 290, 190]], scores=[np.nan, np.nan],
                          labels=["stop sign"] * 2, masks=[red_pixels(), None])


def test_a_grounder_that_segments_gives_its_masks_and_the_segmenter_fills_the_gaps():
    seg = ColourSegmenter()
    p = Pipeline(config(stages={"filter": False, "verify": False}), vlm=ScriptedVLM(seeing_red),
                 grounder=MaskingGrounder(), segmenter=seg)
    d = p.run(scene(), masks=True).detections
    assert d.has_mask().tolist() == [True, True] and seg.box_calls == [1]  # only the box without a mask


def test_falcon_without_a_usable_segmenter_drops_boxes_it_gave_no_mask():
    class Unloadable(Pipeline):
        @property
        def segmenter(self):
            raise ProviderError("segmenter 'facebook/sam-vit-base': cannot load")
    p = Unloadable(config(stages={"filter": False, "verify": False}), vlm=ScriptedVLM(seeing_red),
                   grounder=MaskingGrounder())
    d = p.run(scene(), masks=True).detections
    assert d.kept.tolist() == [True, False] and "no segmenter" in d.reason[1]


def test_drawn_boxes_are_refined_to_the_object_and_never_dropped():
    p, seg = pipeline()
    # a sloppy box around the red disc, and one around the blue square (verify says no: still answered)
    res = p.run_on_boxes(scene(), [[20, 40, 125, 140], [175, 75, 295, 195]], ["Stop Sign", "Stop Sign"], masks=True)
    d = res.detections
    assert d.kept.all() and d.xyxy[0].tolist() == [30, 50, 111, 131]  # the disc's pixels (PIL draws the edge)
    assert d.xyxy[1].tolist() == [180, 80, 291, 191]
    assert d.verify_scores[0] > 0.5 and d.verify_scores[1] == 0
    assert (d.mask(0) == red_pixels()).all() and d.identities[1].label == "Pot Of Greed"
    plain = p.run_on_boxes(scene(), [[20, 40, 125, 140]], ["Stop Sign"])  # no masks: the box as drawn
    assert plain.detections.xyxy[0].tolist() == [20, 40, 125, 140] and not plain.detections.has_mask().any()


def test_clicks_give_the_object_under_them():
    p, seg = pipeline()
    res = p.run_on_clicks(scene(), [[70, 90]], [True], "Stop Sign")
    d = res.detections
    assert len(d) == 1 and d.kept.all() and d.labels.tolist() == ["Stop Sign"]
    assert (d.mask(0) == red_pixels()).all() and d.xyxy[0].tolist() == [30, 50, 111, 131]
    assert d.verify_scores[0] > 0.5 and d.identities[0] is not None
    nothing = p.run_on_clicks(scene(), [[70, 90]], [False], "Stop Sign")
    assert len(nothing.detections) == 0 and "no object" in nothing.note


def test_find_similar_leaves_the_example_out_and_runs_the_cascade():
    finder = ScriptedFinder([([30, 50, 110, 130], 0.9),      # the example itself
                             ([180, 80, 290, 190], 0.8),     # the blue square: verify drops it
                             ([200, 10, 240, 50], 0.05)])    # below the grounding threshold
    p = Pipeline(config(), vlm=ScriptedVLM(seeing_red), grounder=ScriptedGrounder([]), finder=finder,
                 identifier=Names(), segmenter=ColourSegmenter())
    res = p.run_similar(scene(), [30, 50, 110, 130], "Stop Sign", masks=True)
    d = res.detections
    assert finder.examples == [[30, 50, 110, 130]]
    assert d.reason.tolist() == ["the example itself", "verify P(yes) < 0.5", "grounding score < 0.1"]
    assert not d.kept.any() and "nothing like the example" in res.note


def test_find_similar_needs_owlv2_and_says_where_to_set_it():
    cfg = config(providers={"vlm": {"kind": "transformers", "model": "x"}, "grounder": {"kind": "falcon"}})
    p = Pipeline(cfg, vlm=ScriptedVLM(seeing_red), grounder=MaskingGrounder())
    with pytest.raises(ProviderError, match="providers.similar"):
        p.run_similar(scene(), [30, 50, 110, 130], "Stop Sign")


def test_segmenter_always_overrides_the_grounders_own_masks():
    seg = ColourSegmenter()
    cfg = config(stages={"filter": False, "verify": False}, providers={
        "vlm": {"kind": "transformers", "model": "x"}, "grounder": {"kind": "falcon"},
        "segmenter": {"always": True}})
    d = Pipeline(cfg, vlm=ScriptedVLM(seeing_red), grounder=SegmentingOnlyOnRequest(), segmenter=seg).run(
        scene(), masks=True).detections
    assert seg.box_calls == [2] and d.has_mask().all()


class SegmentingOnlyOnRequest(MaskingGrounder):
    def boxes(self, image, queries):
        return Detections(xyxy=[[30, 50, 110, 130], [180, 80, 290, 190]], scores=[np.nan, np.nan],
                          labels=["stop sign"] * 2)
