"""Pixel budgets: each stage's model gets at most its pixels, boxes come back in original pixels exactly,
and memory on a big photo is bounded by the budgets, not by the photo."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image, ImageDraw

from pipeline.cascade import Pipeline
from pipeline.config import ConfigError, parse_project
from pipeline.detections import Detections
from pipeline.images import ImageLoadError, ImageShapeError, fit_size, open_image, open_photo, reduction_for
from pipeline.labelstudio import Layout
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.providers.base import Grounder
from tests.doubles.providers import ColourSegmenter, ScriptedFinder, ScriptedGrounder, ScriptedVLM

RED = (220, 20, 20)


def config(budgets=None, stages=None, vlm=None, grounder=None):
    return parse_project({
        "project_name": "t", "target_object": "stop sign", "label": "Stop Sign",
        "stages": stages or {"filter": True, "ground": True, "verify": True},
        "thresholds": {"filter": 0.0, "grounding": 0.0, "verify": 0.0},
        "budgets": budgets or {},
        "providers": {"vlm": vlm or {"kind": "transformers", "model": "x"},
                      "grounder": grounder or {"kind": "owlv2", "model": "y"}}})


def photo_bytes(size, box=None, fmt="JPEG", exif_orientation=None) -> bytes:
    """A grey image of ``size`` with a red rectangle at ``box`` (pixels of the image as viewed, i.e. after
    EXIF orientation), encoded as ``fmt``."""
    im = Image.new("RGB", size, (128, 128, 128))
    if box:
        ImageDraw.Draw(im).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=RED)
    kw = {}
    if exif_orientation == 6:  # stored rotated: a viewer turns it 90 degrees clockwise
        im = im.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        kw["exif"] = exif
    buf = io.BytesIO()
    im.save(buf, fmt, quality=90, **kw) if fmt == "JPEG" else im.save(buf, fmt, **kw)
    return buf.getvalue()


def red_box(image: Image.Image):
    a = np.asarray(image.convert("RGB")).astype(int)
    ys, xs = np.nonzero((a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 90))
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


class ViewGrounder(Grounder):
    """Answers in pixels of the view it is handed: a box at fixed fractions of it, or the red rectangle
    (and, as a grounder that segments, the red pixels as its mask)."""
    name = "view-grounder"

    def __init__(self, fractions=None, gives_masks=False):
        self.fractions = fractions
        self.gives_masks = gives_masks
        self.views = []

    def boxes(self, image, queries):
        self.views.append(image.size)
        w, h = image.size
        box = red_box(image) if self.fractions is None else \
            [f * s for f, s in zip(self.fractions, (w, h, w, h))]
        return Detections(xyxy=[box], scores=[0.9], labels=[queries[0]], queries=[queries[0]])

    def segment(self, image, queries):
        dets = self.boxes(image, queries)
        dets.set_masks([0], [red_mask(image)])
        return dets


def red_mask(image):
    a = np.asarray(image.convert("RGB")).astype(int)
    return (a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 90)


class SizeSpy:
    """Wraps a provider: records the size of every image handed to it (and the images)."""

    def __init__(self, provider):
        self._provider, self.sizes, self.images = provider, [], []

    def __getattr__(self, name):
        attr = getattr(self._provider, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if args and isinstance(args[0], Image.Image):
                self.sizes.append(args[0].size)
                self.images.append(args[0])
            return attr(*args, **kwargs)
        return call


def iou(mask, box) -> float:
    """Of a mask and a box (1 px of blur at a 4x downscaled view's edges costs ~2.5 % here)."""
    truth = np.zeros_like(mask)
    truth[box[1]:box[3], box[0]:box[2]] = True
    return (mask & truth).sum() / (mask | truth).sum()


# -- decoding at the working resolution ----------------------------------------------------------
def test_reduction_and_fit_arithmetic():
    assert reduction_for(8000, 6000, None) == 1
    assert reduction_for(8000, 6000, 48_000_000) == 1
    assert reduction_for(8000, 6000, 24_000_000) == 2  # 4000 x 3000
    assert reduction_for(10001, 7900, 12_000_000) == 4  # 5001 x 3950 is still too big
    assert reduction_for(100_000, 100_000, 1_000_000) == 8  # never more than libjpeg's 1/8
    assert fit_size(4032, 3024, None) == (4032, 3024)
    w, h = fit_size(4032, 3024, 802_816)
    assert w * h <= 802_816 and abs(w / h - 4 / 3) < 0.01 and w * h > 0.99 * 802_816


def test_big_jpeg_is_decoded_reduced_with_original_size():
    data = photo_bytes((8000, 6000), box=(4000, 3000, 4800, 3600))
    p = open_photo(data, working_pixels=12_000_000)
    assert p.size == (8000, 6000) and p.pixels.size == (4000, 3000) and p.scale == 2
    assert red_box(p.pixels) == pytest.approx([2000, 1500, 2400, 1800], abs=1)
    full = open_photo(data, working_pixels=None)
    assert full.pixels.size == (8000, 6000) and full.scale == 1
    assert open_image(data).size == (8000, 6000)  # the full-resolution loader is unchanged


def test_png_reduced_like_jpeg_and_exif_rotation_keeps_viewed_size():
    png = open_photo(photo_bytes((3000, 2000), fmt="PNG"), working_pixels=1_000_000)
    assert png.size == (3000, 2000) and png.pixels.size == (750, 500) and png.scale == 4
    rotated = open_photo(photo_bytes((6000, 4000), box=(600, 400, 1200, 1000), exif_orientation=6),
                         working_pixels=2_000_000)
    assert rotated.size == (6000, 4000) and rotated.pixels.size == (1500, 1000) and rotated.scale == 4
    assert red_box(rotated.pixels) == pytest.approx([150, 100, 300, 250], abs=1)


def test_budgets_are_validated_and_change_the_fingerprint():
    assert config().fingerprint() != config({"verify_pixels": 100_352}).fingerprint()
    with pytest.raises(ConfigError, match="decode_pixels .* must be at least ground_pixels"):
        config({"decode_pixels": 1_000_000, "ground_pixels": 2_000_000})
    with pytest.raises(ConfigError, match="budgets.filter_pixels"):
        config({"filter_pixels": 10})


# -- boxes back in original pixels -----------------------------------------------------------------
@pytest.mark.parametrize("decode", [None, 12_000_000])
def test_grounder_boxes_map_back_exactly(decode):
    """Constructed grounder output in view pixels -> exactly the same place in original pixels."""
    g = ViewGrounder(fractions=(0.1, 0.25, 0.35, 0.5))
    cfg = config({"decode_pixels": decode, "ground_pixels": 750_000}, stages={"filter": False, "verify": False})
    pipe = Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 1.0), grounder=g)
    res = pipe.run(pipe.open(photo_bytes((8000, 6000))))
    assert g.views == [(1000, 750)]
    assert (res.width, res.height) == (8000, 6000)
    assert res.detections.xyxy.tolist() == [[800.0, 1500.0, 2800.0, 3000.0]]
    layout = Layout.from_config(LabelInterface(config=labeling_config(cfg)))
    results = layout.prediction(res.detections, res.width, res.height, "v")[0]["result"]
    v = results[0]["value"]
    assert (results[0]["original_width"], results[0]["original_height"]) == (8000, 6000)
    assert (v["x"], v["y"], v["width"], v["height"]) == pytest.approx((10.0, 25.0, 25.0, 25.0))


def test_found_object_lands_on_the_original_object():
    """An odd-sized, EXIF-rotated JPEG decoded at 1/4: the box the grounder finds in its small view
    lands on the red rectangle of the original, within one view pixel."""
    box = (1234, 777, 2345, 1888)
    g = ViewGrounder()
    cfg = config({"decode_pixels": 2_000_000, "ground_pixels": 300_000}, stages={"filter": False, "verify": False})
    pipe = Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 1.0), grounder=g)
    photo = pipe.open(photo_bytes((5001, 3001), box=box, exif_orientation=6))
    assert photo.size == (5001, 3001) and photo.scale == 4
    res = pipe.run(photo)
    sx, sy = 5001 / g.views[0][0], 3001 / g.views[0][1]
    np.testing.assert_allclose(res.detections.xyxy[0], box, atol=max(sx, sy) + 1)


def test_verify_crops_cut_at_original_coordinates():
    """Boxes a person drew (original pixels) are cut from the reduced working image at the right place."""
    seen = []
    vlm = ScriptedVLM(lambda im, q: seen.append(im) or 1.0)
    cfg = config({"decode_pixels": 3_000_000, "verify_pixels": 10_000})
    pipe = Pipeline(cfg, vlm=vlm, grounder=ScriptedGrounder([]))
    photo = pipe.open(photo_bytes((4000, 3000), box=(1000, 1000, 1400, 1200)))
    assert photo.scale == 2
    pipe.run_on_boxes(photo, [[1000, 1000, 1400, 1200]], ["Stop Sign"])
    crop = seen[0]
    assert crop.width * crop.height <= 10_000
    a = np.asarray(crop).astype(int)
    assert (a[..., 0] > 150).mean() > 0.4  # padding 0.15 per side: the red box is ~59 % of the crop


# -- masks, clicks and examples in original pixels -------------------------------------------------
SCENE = (4000, 3000)
OBJECT = (1000, 600, 2200, 1500)
SMALL = {"decode_pixels": None, "ground_pixels": 750_000}  # views of 1000x750: 4 original px per view px


def scene():
    return Image.open(io.BytesIO(photo_bytes(SCENE, box=OBJECT, fmt="PNG")))


@pytest.mark.parametrize("own_masks", [False, True])
def test_masks_from_a_view_are_original_size_on_the_object(own_masks):
    """The segmenter (or a grounder that segments) works on a 1000x750 view; the masks that come back are
    4000x3000 and cover the object where it is in the original."""
    seg = SizeSpy(ColourSegmenter())
    g = ViewGrounder(gives_masks=own_masks)
    cfg = config(SMALL, stages={"filter": False, "verify": False})
    res = Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 1.0), grounder=g, segmenter=seg).run(scene(), masks=True)
    assert g.views == [(1000, 750)] and seg.sizes == ([] if own_masks else [(1000, 750)])
    mask = res.detections.mask(0)
    assert mask.shape == (3000, 4000) and iou(mask, OBJECT) > 0.95
    np.testing.assert_allclose(res.detections.xyxy[0], OBJECT, atol=8)  # 2 view px of edge blur


def test_clicks_and_drawn_boxes_on_a_big_photo_are_segmented_on_the_view():
    seg = SizeSpy(ColourSegmenter())
    pipe = Pipeline(config(SMALL, stages={"filter": False, "ground": False, "verify": False}),
                    vlm=ScriptedVLM(lambda im, q: 1.0), grounder=ScriptedGrounder([]), segmenter=seg)
    res = pipe.run_on_clicks(scene(), [[1500, 1000]], [True], "Stop Sign")
    assert seg._provider.point_calls == [([[375.0, 250.0]], [True])]  # the click, in view pixels
    assert res.detections.mask(0).shape == (3000, 4000) and iou(res.detections.mask(0), OBJECT) > 0.95
    np.testing.assert_allclose(res.detections.xyxy[0], OBJECT, atol=8)  # 2 view px of edge blur
    drawn = pipe.run_on_boxes(scene(), [[900, 500, 2300, 1600]], ["Stop Sign"], masks=True)
    assert seg.sizes == [(1000, 750), (1000, 750)]
    np.testing.assert_allclose(drawn.detections.xyxy[0], OBJECT, atol=8)  # refined to the mask box
    assert iou(drawn.detections.mask(0), OBJECT) > 0.95


def test_find_similar_example_and_answers_map_through_the_view():
    finder = SizeSpy(ScriptedFinder([([100, 100, 200, 150], 0.9)]))
    finder.finds_similar = True
    pipe = Pipeline(config(SMALL, stages={"filter": False, "verify": False}), vlm=ScriptedVLM(lambda im, q: 1.0),
                    grounder=ScriptedGrounder([]), finder=finder)
    res = pipe.run_similar(scene(), [2000, 2000, 2400, 2400], "Stop Sign")
    assert finder.sizes == [(1000, 750)] and finder._provider.examples == [[500.0, 500.0, 600.0, 600.0]]
    assert res.detections.xyxy.tolist() == [[400.0, 400.0, 800.0, 600.0]]


# -- what reaches each provider --------------------------------------------------------------------
BIG = (3000, 2000)
# 64 and 16 Qwen tokens; the scripted grounder answers in original pixels, so it gets the full image
BUDGETS = {"filter_pixels": 50_176, "verify_pixels": 12_544, "ground_pixels": None, "decode_pixels": None}
BIG_BOXES = [([100, 100, 1400, 1900], 0.9, "stop sign"), ([1600, 100, 2900, 1900], 0.8, "stop sign")]


class ProcessorSpy:
    """Wraps a transformers processor: records the sizes of the images it is called with."""

    def __init__(self, processor):
        self._processor = processor
        self.sizes: list[list[tuple[int, int]]] = []
        self.image_tokens: list[int] = []

    def __call__(self, *args, images=None, **kwargs):
        self.sizes.append([im.size for im in images])
        out = self._processor(*args, images=images, **kwargs)
        self.image_tokens.append(int((out["input_ids"] == self._processor.image_token_id).sum()))
        return out

    def __getattr__(self, name):
        return getattr(self._processor, name)


def test_transformers_vlm_processor_gets_at_most_the_budget(tiny_qwen_dir, monkeypatch):
    from pipeline.providers.transformers_vlm import TransformersVLM
    vlm = TransformersVLM(str(tiny_qwen_dir), device="cpu", max_batch=4)
    spy = ProcessorSpy(vlm.processor)
    monkeypatch.setattr(vlm, "processor", spy)
    Pipeline(config(BUDGETS), vlm=vlm, grounder=ScriptedGrounder(BIG_BOXES)).run(
        Image.new("RGB", BIG, (120, 60, 60)))
    filter_call, verify_call = spy.sizes
    assert len(filter_call) == 1 and len(verify_call) == 2
    assert filter_call[0][0] * filter_call[0][1] <= BUDGETS["filter_pixels"]
    assert all(w * h <= BUDGETS["verify_pixels"] for w, h in verify_call)
    # Qwen2.5-VL: one token per 28x28 px (rounded to whole tokens per side)
    assert spy.image_tokens[0] <= 1.1 * BUDGETS["filter_pixels"] / 784
    assert spy.image_tokens[1] <= 2 * 1.2 * BUDGETS["verify_pixels"] / 784


def test_openai_vlm_request_carries_at_most_the_budget():
    from pipeline.providers.openai_vlm import OpenAIVLM
    from tests.doubles.openai_server import FakeServer, image_of
    srv = FakeServer()
    try:
        vlm = OpenAIVLM(srv.url, "tiny", retries=0, concurrency=1)
        Pipeline(config(BUDGETS), vlm=vlm, grounder=ScriptedGrounder(BIG_BOXES)).run(
            Image.new("RGB", BIG, (120, 60, 60)))
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
    sizes = [image_of(body).size for body in srv.requests]
    assert len(sizes) == 3
    assert sizes[0][0] * sizes[0][1] <= BUDGETS["filter_pixels"]
    assert sizes[0][0] / sizes[0][1] == pytest.approx(1.5, 0.01)  # aspect kept
    assert all(w * h <= BUDGETS["verify_pixels"] for w, h in sizes[1:])


# -- memory ------------------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import gc, json, sys
    from pathlib import Path
    from pipeline.config import parse_project
    from pipeline.cascade import Pipeline

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    cfg = parse_project(json.loads(sys.argv[1]))
    data = Path(sys.argv[2]).read_bytes()
    pipe = Pipeline(cfg).load()
    from PIL import Image
    pipe.run(Image.new("RGB", (320, 240)))  # warm up the models' own buffers at a small size
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    base = status("VmRSS")
    res = pipe.run(pipe.open(data))
    print(json.dumps({"growth": status("VmHWM") - base, "size": [res.width, res.height]}))
""")


def test_memory_bounded_by_the_budgets_on_an_8000x6000_jpeg(tmp_path, tiny_qwen_dir, tiny_owlv2_dir):
    """A 48 MP photo through filter -> ground -> verify with tiny models, in a fresh process: the peak RSS
    growth stays under what the budgets allow (working image + views + model inputs), far below the
    photo's own 144 MB of RGB pixels times the copies that full-resolution processing makes."""
    budgets = {"decode_pixels": 12_000_000, "filter_pixels": 802_816, "ground_pixels": 1_048_576,
               "verify_pixels": 200_704}
    path = tmp_path / "big.jpg"
    path.write_bytes(photo_bytes((8000, 6000), box=(1000, 1000, 5000, 4000)))
    cfg = {"project_name": "t", "target_object": "stop sign", "budgets": budgets,
           "thresholds": {"filter": 0.0, "grounding": 0.0, "verify": 0.0, "max_boxes": 4},
           "providers": {"vlm": {"kind": "transformers", "model": str(tiny_qwen_dir), "device": "cpu"},
                         "grounder": {"kind": "owlv2", "model": str(tiny_owlv2_dir), "device": "cpu"}}}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg), str(path)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["size"] == [8000, 6000]
    # two uint8 RGB copies of the working image (decoded at 1/2, then a resize source), and for each view a
    # model pre-processor's working copies: HF image processors keep ~8 float64 RGB arrays (24 B/px) alive
    bound = 2 * 3 * budgets["decode_pixels"] + 8 * 24 * (budgets["filter_pixels"] + budgets["ground_pixels"])
    print(f"\npeak RSS growth on an 8000x6000 JPEG: {got['growth'] / 2**20:.0f} MiB (bound {bound / 2**20:.0f} MiB)")
    assert got["growth"] < bound


# -- thin images -------------------------------------------------------------------------------------
def test_square_budget_arithmetic():
    assert fit_size(4000, 27, 1_048_576) == (4000, 27)  # by area it fits: what OWLv2 padded to 4000 x 4000
    assert fit_size(4000, 27, 1_048_576, square=True) == (1024, 6)
    assert fit_size(1600, 1200, 1_048_576, square=True) == (1024, 768)
    assert fit_size(1000, 20, 1_048_576, square=True) == (1000, 20)  # its square already fits
    assert fit_size(27, 4000, 750_000, square=True) == (5, 866)


THIN_OK = {"max_aspect_ratio": None, "decode_pixels": None}


def test_a_model_that_pads_to_a_square_gets_a_view_whose_square_fits_the_budget(tiny_owlv2_960_dir, tiny_sam_dir):
    """OWLv2 (real, 960 px processor) and SAM pad to a square: their view's longest side squared is within
    ground_pixels, for a thin strip as for a photo, and they share one view; a grounder that does not pad
    still gets the area budget."""
    from pipeline.providers.hf_detectors import OWLv2Grounder
    from pipeline.providers.sam import SamSegmenter
    owl = SizeSpy(OWLv2Grounder(str(tiny_owlv2_960_dir), device="cpu"))
    sam = SizeSpy(SamSegmenter(str(tiny_sam_dir), device="cpu"))
    cfg = config(THIN_OK, stages={"filter": False, "verify": False})
    pipe = Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 1.0), grounder=owl, segmenter=sam)
    pipe.run(Image.new("RGB", (4000, 27), (90, 90, 90)))
    pipe.run(scene(), masks=True)
    assert owl.sizes == [(1024, 6), (1024, 768)]
    assert sam.sizes == [(1024, 768)] and sam.images[0] is owl.images[1]  # one resize for both
    flat = ViewGrounder(fractions=(0.1, 0.1, 0.2, 0.2))
    Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 1.0), grounder=flat).run(Image.new("RGB", (4000, 27)))
    assert flat.views == [(4000, 27)]


def test_a_thin_image_is_refused_before_any_model():
    vlm, g = ScriptedVLM(lambda im, q: 1.0), ViewGrounder(fractions=(0.1, 0.1, 0.2, 0.2))
    pipe = Pipeline(config(), vlm=vlm, grounder=g)
    with pytest.raises(ImageShapeError, match=r"^4000x27 image: aspect ratio 148:1 is beyond "
                                              r"budgets\.max_aspect_ratio \(20:1\).*project YAML$"):
        pipe.run(Image.new("RGB", (4000, 27)))
    with pytest.raises(ImageShapeError, match="27x4000 image: aspect ratio 148:1"):
        pipe.run_on_boxes(Image.new("RGB", (27, 4000)), [[0, 0, 10, 10]], ["Stop Sign"])
    with pytest.raises(ImageLoadError, match="max_aspect_ratio"):  # what `label-factory run` skips
        pipe.open(photo_bytes((4000, 27), fmt="PNG"))
    assert vlm.calls == [] and g.views == []
    pipe.run(Image.new("RGB", (2000, 100)))  # 20:1 exactly
    Pipeline(config(THIN_OK), vlm=vlm, grounder=g).run(Image.new("RGB", (4000, 27)))
    assert g.views == [(2000, 100), (4000, 27)]
    assert config().fingerprint() == config({"max_aspect_ratio": 5}).fingerprint()  # it changes no prediction
    with pytest.raises(ConfigError, match="budgets.max_aspect_ratio"):
        config({"max_aspect_ratio": 0.5})


PREDICT_CHILD = textwrap.dedent("""
    import gc, json, os, resource, sys, time
    from pathlib import Path
    import yaml

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    project, files, deadline = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    from tests.doubles.servers import FileServer
    server = FileServer()
    for url, path in files.items():
        server.files[url] = Path(path).read_bytes()
    work = Path(sys.argv[4])
    (work / "p.yaml").write_text(yaml.safe_dump(project))
    os.environ.update(PROJECT_CONFIG=str(work / "p.yaml"), PROJECTS_DIR=str(work), MODEL_DIR=str(work / "m"),
                      LABEL_STUDIO_URL=server.url, LABEL_STUDIO_API_KEY="0123456789abcdef0123456789abcdef01234567",
                      PREDICT_DEADLINE=deadline, LF_ANSWER_CACHE="0")
    from pipeline.labelstudio import versions as project_version
    from backends.autolabel.model import AutoLabelModel
    from backends.base import init_app
    from pipeline.config import parse_project
    from pipeline.labelstudio.labeling_config import labeling_config
    project_version.keep = lambda *args: None
    client, config = init_app(AutoLabelModel).test_client(), labeling_config(parse_project(project))

    def predict(url):
        return client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": url}}], "project": "5.1",
                                             "label_config": config}).json
    warm = predict("/data/upload/5/warm.jpg")  # OWLv2 loaded, its buffers warm
    assert "errors" not in warm, warm
    # a regression must fail its task, not take the machine's memory
    limit = status("VmData") + 2 * 2**30
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    for url in files:
        if url.endswith("/warm.jpg"):
            continue
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
        base, t0 = status("VmRSS"), time.monotonic()
        body = predict(url)
        print(json.dumps({"image": url, "growth_mb": (status("VmHWM") - base) / 2**20,
                          "seconds": time.monotonic() - t0, "answered": bool(body["results"][0]),
                          "error": ((body.get("errors") or [{}])[0]).get("reason", "")}), flush=True)
""")
THIN_SIZES = [(2000, 14), (4000, 27), (8000, 54), (30000, 200)]


def strip_bytes(size, fmt) -> bytes:
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(w) % 256
    a[..., 1] = (np.arange(h) * 7 % 256)[:, None]
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("budgets", [{}, {"max_aspect_ratio": None}], ids=["refused", "allowed"])
def test_thin_images_through_predict_stay_small_and_in_time(tmp_path, tiny_owlv2_960_dir, budgets):
    """2000x14 ... 30000x200 strips, PNG and JPEG, through /predict with OWLv2's real 960 px pre-processing,
    each in a fresh process: peak RSS growth <= 300 MB and an answer within PREDICT_DEADLINE. By default
    they are refused (148:1 > 20:1) with the reason; allowed, OWLv2 sees a view whose square fits
    ground_pixels. A 20:1 strip is answered either way."""
    files = {"/data/upload/5/warm.jpg": tmp_path / "warm.jpg"}
    Image.new("RGB", (640, 480), (90, 90, 90)).save(tmp_path / "warm.jpg")
    for size in THIN_SIZES + [(4000, 200)]:
        for fmt in ("PNG", "JPEG"):
            path = tmp_path / f"{size[0]}x{size[1]}.{fmt.lower()}"
            path.write_bytes(strip_bytes(size, fmt))
            files[f"/data/upload/5/{path.name}"] = path
    project = {"project_name": "thin", "target_object": "stop sign", "label": "Stop Sign", "budgets": budgets,
               "stages": {"filter": False, "ground": True, "verify": False},
               "providers": {"vlm": {"kind": "transformers", "model": "unused"},
                             "grounder": {"kind": "owlv2", "model": str(tiny_owlv2_960_dir), "device": "cpu"}}}
    deadline = 30
    out = subprocess.run([sys.executable, "-c", PREDICT_CHILD, json.dumps(project),
                          json.dumps({k: str(v) for k, v in files.items()}), str(deadline), str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    print("".join(f"\n{r['image'].rsplit('/', 1)[1]:>15}: +{r['growth_mb']:.0f} MB, {r['seconds']:.1f} s, "
                  f"{'answered' if r['answered'] else r['error'][:90]}" for r in rows))
    assert len(rows) == 2 * len(THIN_SIZES) + 2
    for r in rows:
        assert r["growth_mb"] <= 300 and r["seconds"] < deadline, r
        if not budgets and not r["image"].endswith("/4000x200.png") and not r["image"].endswith("/4000x200.jpeg"):
            assert not r["answered"] and "budgets.max_aspect_ratio (20:1)" in r["error"], r
        else:
            assert r["answered"] and not r["error"], r
