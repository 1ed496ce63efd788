"""`up` with real models fails fast, before starting anything, and names the offline option."""
import pytest
import yaml

from pipeline.config import load_project, parse_project
from pipeline.stack.models import ModelsUnavailable, check_real_models, tiny_project
from pipeline.stack.processes import free_port


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


def test_tiny_project_points_at_built_models(tmp_path):
    src = "projects/stop-signs.yaml"
    out = tiny_project(load_project(src), src, tmp_path / "cache", tmp_path / "p.yaml")
    cfg = load_project(out)
    assert cfg.providers.vlm.kind == "transformers" and (tmp_path / "cache" / "qwen2_5_vl" / "config.json").exists()
    assert cfg.providers.grounder.model == str(tmp_path / "cache" / "owlv2")
    assert cfg.thresholds.filter == 0.0 and cfg.buckets == load_project(src).buckets
    assert "random-weight" in out.read_text().splitlines()[0]
    assert yaml.safe_load(out.read_text())["project_name"] == "stop-signs"
