"""The auto-label backend with brush and polygon labeling configs, through Flask's test client: batch
predictions and the smart tools (a click, a box to refine, an example box), with providers whose answers
are known (scripted grounder / finder, a segmenter that knows flat colours). Every result is checked
with label-studio-sdk's validation against the config; only the region just drawn is answered."""
import io

import numpy as np
import pytest
import yaml
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image, ImageDraw

from backends.autolabel.model import AutoLabelModel
from backends.base import init_app
from pipeline.cascade import Pipeline
from pipeline.config import parse_project
from pipeline.labelstudio.coords import xyxy_to_rect
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.labelstudio.masks import rle_to_mask
from pipeline.predict import runner
from tests.doubles import regions as regions_
from tests.doubles.images import encode
from tests.doubles.providers import ColourSegmenter, KnownGrounder, KnownVLM, ScriptedFinder
from tests.doubles.servers import FileServer
from tests.ls_helpers import assert_valid_prediction

PROJECT = {"project_name": "signs", "target_object": "stop sign", "label": "Stop Sign",
           "falcon_queries": {"Stop Sign": ["stop sign"], "Yield": ["yield sign"]},
           "thresholds": {"filter": 0.5, "grounding": 0.1, "verify": 0.5}}
W, H = 200, 100
RED, BLUE = (220, 20, 20), (20, 20, 220)
IMG = "/data/upload/5/a.png"


def png() -> bytes:
    """A red disc (x 20..60, y 20..60) and a blue square (x 120..160, y 40..80) on grey."""
    im = Image.new("RGB", (W, H), (200, 200, 200))
    d = ImageDraw.Draw(im)
    d.ellipse((20, 20, 59, 59), fill=RED)
    d.rectangle((120, 40, 159, 79), fill=BLUE)
    return encode(im, "PNG")


def colour(rgb):
    a = np.asarray(Image.open(io.BytesIO(png())).convert("RGB")).astype(int)
    return np.abs(a - rgb).sum(-1) == 0


@pytest.fixture
def backend(tmp_path, monkeypatch):
    files = FileServer()
    files.files[IMG] = png()
    for k, v in {"MODEL_DIR": str(tmp_path / "model-dir"), "LABEL_STUDIO_URL": files.url,
                 "LABEL_STUDIO_API_KEY": "feedc0ffee0123456789abcdef0123456789abcd"}.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "signs.yaml"
    path.write_text(yaml.safe_dump(PROJECT))
    monkeypatch.setenv("PROJECT_CONFIG", str(path))
    seg = ColourSegmenter()
    finder = ScriptedFinder([([20, 20, 60, 60], 0.9),  # the example itself
                             ([120, 40, 160, 80], 0.8)])  # the blue square
    grounder = KnownGrounder({"stop sign": [(0.1, 0.2, 0.3, 0.6, 0.9)], "yield sign": [(0.6, 0.4, 0.8, 0.8, 0.7)]})
    monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda cfg: Pipeline(cfg, vlm=KnownVLM(0.9), grounder=grounder,
                                                                         segmenter=seg, finder=finder))
    runner.pipelines.clear()
    client = init_app(AutoLabelModel).test_client()

    def predict(config, context=None, status=200):
        r = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": IMG}}], "project": "5.1700000000",
                                          "label_config": config, "params": {"context": context}})
        assert r.status_code == status, r.get_data(as_text=True)
        return r.json

    predict.segmenter, predict.finder, predict.grounder = seg, finder, grounder
    yield predict
    runner.pipelines.clear()
    files.close()


def config(masks):
    return labeling_config(parse_project(PROJECT), masks=masks)


def region(kind, name, value, label="Stop Sign", origin=None, **extra):
    return regions_.region(kind, value, label, rid=f"{name}-{len(str(value))}", from_name=name, size=(W, H),
                           origin=origin, **extra)


def click(x, y, positive=True, origin=None):
    return region("keypointlabels", "click", {"x": 100 * x / W, "y": 100 * y / H, "width": 1}, origin=origin,
                  is_positive=positive)


@pytest.mark.parametrize("masks", ["brush", "polygon"])
def test_batch_predictions_are_masks(backend, masks):
    cfg = config(masks)
    body = backend(cfg)
    (pred,) = body["results"]
    assert_valid_prediction(LabelInterface(config=cfg), pred["result"], pred["score"])
    assert [r["type"] for r in pred["result"]] == [f"{masks}labels"] * 2
    assert sorted(r["value"][f"{masks}labels"][0] for r in pred["result"]) == ["Stop Sign", "Yield"]
    assert all(r["score"] == pytest.approx(0.9) for r in pred["result"])  # verify's P(yes) travels with the mask
    assert backend.segmenter.box_calls == [2]  # one batch for the image's two boxes
    if masks == "brush":
        stop = next(r for r in pred["result"] if r["value"]["brushlabels"] == ["Stop Sign"])
        assert (rle_to_mask(stop["value"]["rle"], W, H) == colour(RED)).all()


@pytest.mark.parametrize("masks", ["brush", "polygon"])
def test_a_click_answers_the_object_under_it_and_nothing_else(backend, masks):
    cfg = config(masks)
    ctx = {"result": [click(140, 60, origin="prediction"), click(140, 60), click(40, 40)]}
    body = backend(cfg, ctx)
    (pred,) = body["results"]
    assert_valid_prediction(LabelInterface(config=cfg), pred["result"])
    (res,) = pred["result"]  # only the newest click: the red disc, not the blue square clicked before
    assert backend.segmenter.point_calls == [([[40, 40]], [True])]
    assert res["type"] == f"{masks}labels" and res["value"][f"{masks}labels"] == ["Stop Sign"]
    assert res["score"] == pytest.approx(0.9)
    if masks == "brush":
        assert (rle_to_mask(res["value"]["rle"], W, H) == colour(RED)).all()
    assert backend.grounder.calls == []


def test_a_negative_click_refines_the_positive_one_before_it(backend):
    ctx = {"result": [click(140, 60), click(40, 40), click(150, 70, positive=False)]}
    backend(config("brush"), ctx)
    assert backend.segmenter.point_calls == [([[40, 40], [150, 70]], [True, False])]


def test_a_box_drawn_with_the_box_tool_becomes_the_objects_mask(backend):
    cfg = config("brush")
    sloppy = xyxy_to_rect([10, 10, 75, 70], W, H)
    body = backend(cfg, {"result": [region("rectanglelabels", "box", sloppy)]})
    (pred,) = body["results"]
    assert_valid_prediction(LabelInterface(config=cfg), pred["result"])
    (res,) = pred["result"]
    assert (rle_to_mask(res["value"]["rle"], W, H) == colour(RED)).all() and res["score"] == pytest.approx(0.9)


def test_a_box_refined_also_as_a_rectangle_when_the_config_has_rectangles(backend):
    cfg = ('<View><Image name="image" value="$image"/>'
           '<RectangleLabels name="label" toName="image" smart="true"><Label value="Stop Sign"/></RectangleLabels>'
           '<BrushLabels name="mask" toName="image"><Label value="Stop Sign"/></BrushLabels></View>')
    drawn = {**xyxy_to_rect([5, 50, 30, 95], W, H), "rotation": -90}  # rotated: encloses x 5..50, y 25..50
    body = backend(cfg, {"result": [region("rectanglelabels", "label", drawn)]})
    (pred,) = body["results"]
    assert_valid_prediction(LabelInterface(config=cfg), pred["result"])
    rect, brush = pred["result"]
    assert rect["type"] == "rectanglelabels" and brush["type"] == "brushlabels"
    # refined to the red pixels inside the drawn box: the disc (x 20..59) cut at x = 50, y 25 .. 50
    assert (rect["value"]["x"], rect["value"]["width"]) == pytest.approx((10, 15))
    assert rle_to_mask(brush["value"]["rle"], W, H).sum() == colour(RED)[25:50, 5:50].sum()


def test_an_example_box_finds_more_like_it(backend):
    cfg = config("polygon")
    body = backend(cfg, {"result": [region("rectanglelabels", "similar", xyxy_to_rect([20, 20, 60, 60], W, H),
                                           label="Yield")]})
    (pred,) = body["results"]
    assert_valid_prediction(LabelInterface(config=cfg), pred["result"])
    (res,) = pred["result"]  # the blue square; the example itself is left out
    assert res["type"] == "polygonlabels" and res["value"]["polygonlabels"] == ["Yield"]
    xs = [p[0] for p in res["value"]["points"]]
    assert min(xs) == pytest.approx(100 * 120.5 / W) and max(xs) == pytest.approx(100 * 159.5 / W)
    assert backend.finder.examples == [[20, 20, 60, 60]]


def test_regions_from_predictions_alone_get_no_answer(backend):
    body = backend(config("brush"), {"result": [click(40, 40, origin="prediction")]})
    assert backend.segmenter.point_calls == [] and backend.grounder.calls == []
    assert body["results"][0]["result"] == []


def test_a_config_without_an_output_is_refused_with_the_reason(backend):
    body = backend('<View><Image name="image" value="$image"/><EllipseLabels name="e" toName="image">'
                   '<Label value="Stop Sign"/></EllipseLabels></View>', status=422)
    assert "EllipseLabels" in body["detail"] and "BrushLabels" in body["detail"]
