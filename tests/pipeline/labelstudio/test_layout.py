"""The output layer: which controls a config has, and Detections -> results that label-studio-sdk's own
validation accepts for that config (every result checked with ``validate_prediction``)."""
import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface

from pipeline.detections import Detections
from pipeline.identify.index import UNKNOWN, Match
from pipeline.labelstudio import Layout, UnsupportedConfig, read_regions
from pipeline.labelstudio.masks import rle_to_mask
from tests.ls_helpers import assert_valid_prediction

W, H = 80, 60
IMAGE = '<Image name="image" value="$img"/>'


def config(*tags: str) -> LabelInterface:
    return LabelInterface(config="<View>" + IMAGE + "".join(tags) + "</View>")


RECT = '<RectangleLabels name="box" toName="image"><Label value="Stop Sign" predicted_values="octagon"/>' \
       '<Label value="Car"/></RectangleLabels>'
BRUSH = '<BrushLabels name="mask" toName="image"><Label value="Stop Sign"/><Label value="Car"/></BrushLabels>'
POLY = '<PolygonLabels name="poly" toName="image"><Label value="stop sign"/></PolygonLabels>'


def square_mask(x1, y1, x2, y2):
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


def dets(masks=True, identities=None):
    d = Detections(xyxy=[[20, 10, 50, 40], [0, 0, 10, 10], [60, 30, 70, 50], [1, 1, 9, 9]],
                   scores=[0.9, 0.5, np.nan, 0.2], labels=["stop sign", "dog", "car", "car"],
                   masks=[square_mask(20, 10, 50, 40), square_mask(0, 0, 10, 10), square_mask(60, 30, 70, 50),
                          square_mask(1, 1, 9, 9)] if masks else None, identities=identities)
    d.set_verify_scores([2], [0.7])
    d.drop([False, False, False, True], "verify", "low")
    return d


def test_rectangles_labels_scores_and_dropped_labels():
    li = config(RECT)
    lay = Layout.from_config(li)
    assert [o.name for o in lay.outputs] == ["box"] and not lay.needs_masks and lay.data_key == "img"
    res, dropped = lay.results(dets(masks=False), W, H)
    assert_valid_prediction(li, res, score=0.8)
    assert dropped == {"dog": 1}  # "dog" has no label in the config
    assert [r["value"]["rectanglelabels"] for r in res] == [["Stop Sign"], ["Car"]]
    assert [r["score"] for r in res] == pytest.approx([0.9, 0.7])  # verify's P(yes) when verify ran
    assert res[0]["value"]["x"] == pytest.approx(25) and res[0]["original_width"] == W
    assert len({r["id"] for r in res}) == 2


def test_brush_and_polygon_outputs_carry_the_masks():
    li = config(BRUSH, POLY)
    lay = Layout.from_config(li)
    assert lay.needs_masks and [o.name for o in lay.outputs] == ["mask", "poly"]
    res, dropped = lay.results(dets(), W, H)
    assert_valid_prediction(li, res)
    brushes = [r for r in res if r["type"] == "brushlabels"]
    polys = [r for r in res if r["type"] == "polygonlabels"]
    assert [r["value"]["brushlabels"] for r in brushes] == [["Stop Sign"], ["Car"]]
    assert [r["value"]["polygonlabels"] for r in polys] == [["stop sign"]]  # the polygon control has no "car"
    assert dropped == {"dog": 1}
    assert rle_to_mask(brushes[0]["value"]["rle"], W, H).sum() == 30 * 30
    assert brushes[0]["score"] == pytest.approx(0.9) and polys[0]["score"] == pytest.approx(0.9)
    xs = [p[0] for p in polys[0]["value"]["points"]]
    assert min(xs) == pytest.approx(100 * 20.5 / W) and max(xs) == pytest.approx(100 * 49.5 / W)


def test_a_box_without_a_mask_gets_no_brush_region():
    li = config(BRUSH)
    res, dropped = Layout.from_config(li).results(dets(masks=False), W, H)
    assert res == [] and dropped == {"stop sign": 1, "dog": 1, "car": 1}


def test_read_back_what_the_layer_wrote():
    li = config(RECT, BRUSH, POLY)
    res, _ = Layout.from_config(li).results(dets(), W, H)
    back = read_regions(res, W, H, with_masks=True)
    assert back.extra["kind"].tolist() == ["box", "brush", "polygon", "box", "brush"]
    assert np.allclose(back.xyxy[0], [20, 10, 50, 40], atol=1e-3)
    assert back.xyxy[1].tolist() == [20, 10, 50, 40]  # the brush's pixels
    assert back.mask_areas().tolist() == [0, 900, 900, 0, 200]
    assert back.labels.tolist() == ["Stop Sign", "Stop Sign", "stop sign", "Car", "Car"]


def match(label, cosine=0.93, margin=0.2):
    return Match(label=label, best_label=label, variant=None, cosine=cosine, margin=margin, known=label != UNKNOWN)


@pytest.mark.parametrize("names", [
    '<TextArea name="name" toName="image" perRegion="true"/>',
    '<Choices name="name" toName="image" perRegion="true"><Choice value="Pot Of Greed"/></Choices>'])
def test_identity_in_a_per_region_control_next_to_every_region(names):
    li = config(RECT, BRUSH, names)
    lay = Layout.from_config(li)
    d = dets(identities=[match("Pot Of Greed"), match(UNKNOWN, 0.4), None, None])
    res, _ = lay.results(d, W, H)
    assert_valid_prediction(li, res)
    named = [r for r in res if r["from_name"] == "name"]
    assert len(named) == 2  # one for the rectangle, one for the brush of box 0
    regions = {r["id"]: r for r in res if r["from_name"] in ("box", "mask")}
    for n in named:
        region = regions[n["id"]]
        assert n["score"] == pytest.approx(0.93)
        assert region["score"] == pytest.approx(0.9)  # the region keeps its own label and verify score
        assert region["value"][region["type"]] == ["Stop Sign"]
        if region["type"] == "rectanglelabels":
            assert n["value"]["x"] == region["value"]["x"]
    unknown = [r for r in res if r.get("meta") and r["meta"]["text"][0].startswith(UNKNOWN)]
    assert unknown == []  # box 1 ("dog") has no region at all
    assert "Pot Of Greed cos=0.93" in next(r for r in res if r["from_name"] == "box")["meta"]["text"][0]


def test_identity_that_is_a_label_becomes_the_region_label_scored_with_the_cosine():
    li = config('<RectangleLabels name="box" toName="image"><Label value="Stop Sign"/><Label value="Dark Magician"/>'
                '</RectangleLabels>')
    d = dets(masks=False, identities=[match("dark magician", 0.88), None, None, None])
    res, _ = Layout.from_config(li).results(d, W, H)
    assert_valid_prediction(li, res)
    assert res[0]["value"]["rectanglelabels"] == ["Dark Magician"] and res[0]["score"] == pytest.approx(0.88)


def test_controls_that_only_prompt_or_are_skipped_get_no_predictions():
    li = config(RECT.replace('name="box"', 'name="box" model_skip="true"'),
                '<RectangleLabels name="refine" toName="image" smart="true" smartOnly="true"><Label value="Car"/>'
                '</RectangleLabels>',
                '<RectangleLabels name="like" toName="image" smart="true" find_similar="true"><Label value="Car"/>'
                '</RectangleLabels>',
                '<KeyPointLabels name="click" toName="image" smart="true"><Label value="Car"/></KeyPointLabels>',
                BRUSH, '<TextArea name="prompt" toName="image"/>', '<Choices name="kind" toName="image">'
                '<Choice value="day"/></Choices>',
                '<EllipseLabels name="ell" toName="image"><Label value="Car"/></EllipseLabels>')
    lay = Layout.from_config(li)
    assert [o.name for o in lay.outputs] == ["mask"]
    assert [c.name for c in lay.prompt_boxes] == ["refine"] and [c.name for c in lay.examples] == ["like"]
    assert [c.name for c in lay.clicks] == ["click"] and lay.prompt == "prompt"
    assert set(lay.ignored) == {"box", "kind", "ell"} and "ellipses" in lay.ignored["ell"]


@pytest.mark.parametrize("tags, message", [
    (['<EllipseLabels name="e" toName="image"><Label value="a"/></EllipseLabels>'], "EllipseLabels name='e'"),
    (['<KeyPointLabels name="k" toName="image"><Label value="a"/></KeyPointLabels>'], "clicks that ask for a mask"),
    (['<Choices name="c" toName="image"><Choice value="a"/></Choices>'], "per-image choices"),
    (['<Number name="n" toName="image"/>'], "not an output"),
    ([RECT.replace('name="box"', 'name="box" model_skip="true"')], "switched off"),
])
def test_configs_without_an_output_are_refused_with_the_reason(tags, message):
    with pytest.raises(UnsupportedConfig, match=message) as e:
        Layout.from_config(config(*tags))
    if "switched off" not in message:
        assert "RectangleLabels, Rectangle, BrushLabels, Brush, PolygonLabels, Polygon" in str(e.value)


def test_no_image_and_no_config():
    with pytest.raises(UnsupportedConfig, match="no <Image>"):
        Layout.from_config(LabelInterface(config='<View><Text name="t" value="$t"/>'
                                                 '<Labels name="l" toName="t"><Label value="a"/></Labels></View>'))
    with pytest.raises(UnsupportedConfig, match="no labeling config"):
        Layout.from_config(None)


def test_the_image_with_an_output_is_chosen():
    li = LabelInterface(config='<View><Image name="a" value="$a"/><Image name="b" value="$b"/>'
                               '<EllipseLabels name="e" toName="a"><Label value="x"/></EllipseLabels>'
                               '<Rectangle name="r" toName="b"/></View>')
    lay = Layout.from_config(li)
    assert lay.image == "b" and lay.data_key == "b" and "e" in lay.ignored
    res, dropped = lay.results(dets(masks=False), W, H)
    assert_valid_prediction(li, res)
    assert len(res) == 3 and dropped == {} and all("rectanglelabels" not in r["value"] for r in res)


def test_sdk_validation_is_strict_enough_to_catch_a_wrong_label():
    li = config(BRUSH)
    res, _ = Layout.from_config(li).results(dets(), W, H)
    res[0]["value"]["brushlabels"] = ["Not A Label"]
    with pytest.raises(AssertionError):
        assert_valid_prediction(li, res)


def test_regions_reader_names_points_and_bad_regions():
    results = [
        {"id": "r1", "type": "rectanglelabels", "from_name": "box", "to_name": "image",
         "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 90, "rectanglelabels": ["Car"]}},
        {"id": "r1", "type": "textarea", "from_name": "name", "to_name": "image",
         "value": {"x": 10, "y": 10, "width": 20, "height": 20, "text": ["Herbie"]}},
        {"id": "k1", "type": "keypointlabels", "from_name": "click", "to_name": "image", "is_positive": False,
         "value": {"x": 50, "y": 50, "width": 1, "labels": ["Car"]}},
        {"id": "bad", "type": "rectanglelabels", "value": {"x": "?"}},
        {"id": "p", "type": "polygonlabels", "value": {"points": [[1, 1], [2, 2]], "polygonlabels": ["Car"]}},
    ]
    d = read_regions(results, W, H)
    assert d.labels.tolist() == ["Herbie", "Car"]
    assert d.extra["region_id"].tolist() == ["r1", "k1"] and d.extra["kind"].tolist() == ["box", "point"]
    # 16 x 12 px at (8, 6) rotated 90 degrees about (8, 6): x 8 - 12 .. 8 (clipped at 0), y 6 .. 6 + 16
    assert np.allclose(d.xyxy[0], [0, 6, 8, 22], atol=1e-3)
    assert d.xyxy[1].tolist() == [40, 30, 40, 30] and d.extra["positive"].tolist() == [True, False]
    assert len(read_regions(results, W, H, kinds=["point"])) == 1
