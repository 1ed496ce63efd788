"""`up` with real models fails fast, before starting anything, and names the offline option; tiny models are
built whole or built again."""
import pytest
import yaml

from pipeline.config import load_project, parse_project
from pipeline.stack import models
from pipeline.stack.models import ModelsUnavailable, check_real_models, tiny_project
from pipeline.stack.processes import free_port
from tests.dying_writes import stray_files


def test_unreachable_vlm_server_and_missing_weights_name_the_tiny_option(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = parse_project({"project_name": "p", "target_object": "cat", "providers": {
        "vlm": {"kind": "openai", "url": f"http://127.0.0.1:{free_port()}/v1"},
        "grounder": {"kind": "owlv2", "model": "google/owlv2-base-patch16-ensemble"}}})
    with pytest.raises(ModelsUnavailable) as e:
        check_real_models(cfg)
    msg = str(e.value)
    assert "does not answer" in msg and "owlv2-base-patch16-ensemble" in msg
    assert "label-factory up --models tiny" in msg


def test_local_model_dirs_pass_the_check(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "vlm").mkdir()
    (tmp_path / "owl").mkdir()
    cfg = parse_project({"project_name": "p", "target_object": "cat", "providers": {
        "vlm": {"kind": "transformers", "model": str(tmp_path / "vlm")},
        "grounder": {"kind": "owlv2", "model": str(tmp_path / "owl")}}})
    check_real_models(cfg)  # no exception


def test_masks_need_the_segmenter_too(tmp_path, monkeypatch):
    """`up --masks brush` with real models: a segmenter that is not on this machine stops it before anything starts."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for d in ("vlm", "owl"):
        (tmp_path / d).mkdir()
    cfg = parse_project({"project_name": "p", "target_object": "cat", "providers": {
        "vlm": {"kind": "transformers", "model": str(tmp_path / "vlm")},
        "grounder": {"kind": "owlv2", "model": str(tmp_path / "owl")},
        "segmenter": {"model": str(tmp_path / "no-sam-here")}}})
    check_real_models(cfg)  # boxes: no segmenter needed
    with pytest.raises(ModelsUnavailable, match="no-sam-here"):
        check_real_models(cfg, masks="brush")


def test_tiny_project_points_at_built_models(tmp_path):
    src = "projects/stop-signs.yaml"
    out = tiny_project(load_project(src), src, tmp_path / "cache", tmp_path / "p.yaml")
    cfg = load_project(out)
    assert cfg.providers.vlm.kind == "transformers" and (tmp_path / "cache" / "qwen2_5_vl" / "config.json").exists()
    assert cfg.providers.grounder.model == str(tmp_path / "cache" / "owlv2")
    assert cfg.providers.segmenter.model == str(tmp_path / "cache" / "sam")
    assert (tmp_path / "cache" / "sam" / "config.json").exists()
    assert cfg.thresholds.filter == 0.0 and cfg.buckets == load_project(src).buckets
    assert "random-weight" in out.read_text().splitlines()[0]
    assert yaml.safe_load(out.read_text())["project_name"] == "stop-signs"


def test_tiny_model_build_that_dies_is_built_again(tmp_path, monkeypatch):
    built = []

    def dies_midway(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")  # the first file a save_pretrained writes
        raise KeyboardInterrupt("stopped while saving the weights")

    def builds(out):
        built.append(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
    from pipeline.tiny import detectors, qwen, sam
    monkeypatch.setattr(qwen, "build", dies_midway)
    monkeypatch.setattr(detectors, "build_owlv2", builds)
    monkeypatch.setattr(sam, "build_sam", builds)
    src, cache = "projects/stop-signs.yaml", tmp_path / "cache"
    cfg = load_project(src)
    with pytest.raises(KeyboardInterrupt):
        models.tiny_project(cfg, src, cache, tmp_path / "p.yaml")
    assert not (cache / "qwen2_5_vl").exists()
    monkeypatch.setattr(qwen, "build", builds)
    models.tiny_project(cfg, src, cache, tmp_path / "p.yaml")
    assert (cache / "qwen2_5_vl" / "config.json").exists() and len(built) == 3  # the VLM again, OWLv2, SAM once
    assert stray_files(cache, {"qwen2_5_vl/config.json", "owlv2/config.json", "sam/config.json"}) == []
