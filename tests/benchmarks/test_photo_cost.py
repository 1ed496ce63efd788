"""benchmarks/photo_cost.py: the configuration it measures is the project's cascade with the benchmark's models,
and the fixed boxes make verify see what cost.estimate prices (BOXES crops of budgets.verify_pixels)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import supervision as sv
from PIL import Image

_cache_setting = os.environ.get("LF_ANSWER_CACHE")
from benchmarks import photo_cost  # noqa: E402 - benchmarks._common turns the answer cache off at import
from benchmarks.falcon_cpu import ScriptedTokens  # noqa: E402

if _cache_setting is None:
    os.environ.pop("LF_ANSWER_CACHE", None)

from pipeline import cost  # noqa: E402
from pipeline.config import Budgets, Thresholds  # noqa: E402
from pipeline.cost import qwen_image_tokens  # noqa: E402
from pipeline.crops import crop  # noqa: E402
from pipeline.detections import Detections  # noqa: E402
from pipeline.images import Photo  # noqa: E402
from pipeline.model_version import model_version  # noqa: E402
from pipeline.stages import from_view, select  # noqa: E402

PATHS = {"vlm": "/models/qwen", "owlv2": "/models/owl", "falcon": "/models/falcon", "sam": "/models/sam"}


@pytest.mark.parametrize("size", [(1920, 1080), (4032, 3024), (3024, 4032)])
def test_fixed_boxes_survive_the_ground_stage_and_give_full_budget_verify_crops(size):
    photo = Photo.of(Image.new("RGB", size))
    view = photo.view(Budgets().ground_pixels)
    xyxy = photo_cost.fixed_boxes(*view.image.size, cost.BOXES)
    dets = from_view(Detections(xyxy=xyxy, scores=np.ones(len(xyxy)), labels=["q"] * len(xyxy),
                                queries=["q"] * len(xyxy)), view)
    select(dets, photo, Thresholds(grounding=0.0, max_boxes=cost.BOXES, nms_iou=0.5))
    assert len(dets.active_index()) == cost.BOXES  # inside the image, not merged by NMS, not over max_boxes
    iou = sv.box_iou_batch(dets.xyxy, dets.xyxy)
    assert (iou[~np.eye(cost.BOXES, dtype=bool)] == 0).all()
    budget = Budgets().verify_pixels
    for box in dets.xyxy:
        w, h = crop(photo, box, 0.15, budget).size
        # the crop cost.estimate prices: 448x448 px of verify_pixels = 256 Qwen2.5-VL image tokens
        assert qwen_image_tokens(w, h) == qwen_image_tokens(448, 448) == 256


@pytest.mark.parametrize("project, grounder", [("stop-signs", "owlv2"), ("drones", "falcon")])
def test_bench_config_swaps_the_models_and_opens_every_gate(project, grounder):
    cfg = photo_cost.bench_config(project, "bf16", "cpu", PATHS)
    p = cfg.providers
    assert (p.vlm.kind, p.vlm.model, p.vlm.dtype) == ("transformers", "/models/qwen", "bf16")
    assert (p.grounder.kind, p.grounder.model, p.grounder.dtype) == (grounder, PATHS[grounder], "bf16")
    if grounder == "falcon":
        assert p.grounder.backend == "torch" and p.grounder.max_new_tokens == cost.FALCON_DECODE_STEPS
    th = cfg.thresholds
    assert (th.filter, th.grounding, th.verify, th.max_boxes) == (0.0, 0.0, 0.0, cost.BOXES)
    assert cfg.stages.filter and cfg.stages.ground and cfg.stages.verify
    assert model_version(cfg).endswith("-bf16")  # an explicit bf16 is a different model_version
    assert not model_version(photo_cost.bench_config(project, "fp32", "cpu", PATHS)).endswith("-bf16")


def test_scripted_tokens_steer_a_real_falcon_to_boxes_then_the_end(tiny_falcon_dir, monkeypatch):
    """Through the package's own generation loop: <coord>/<size> pairs (3 boxes per query from the model's box
    heads), the end token after ``steps`` decode steps, prefill + ``steps`` model calls per batch."""
    from pipeline.config import GrounderProvider
    from pipeline.providers.falcon import FalconGrounder
    from pipeline.tiny.falcon import use_tiny_model_args
    use_tiny_model_args(tiny_falcon_dir, monkeypatch)
    g = FalconGrounder.from_config(GrounderProvider(model=str(tiny_falcon_dir), backend="torch", device="cpu",
                                                    max_new_tokens=64))
    scripted = ScriptedTokens.install(g, 7)
    assert g.engine.model is scripted
    dets = g.boxes(Image.new("RGB", (320, 240), "gray"), ["drone", "spool"])
    assert scripted.emitted == 1 + 7  # one batch of both queries: prefill, then 7 decode steps (not 64, not 128)
    assert sorted(dets.queries.tolist()) == ["drone"] * 3 + ["spool"] * 3
