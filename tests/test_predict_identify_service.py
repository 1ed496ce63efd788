"""The identify service of a `predict` job: a process given its project on the command line (no
PROJECT_CONFIG, as in `predict --ray` actors) embeds with that project's CLIP model; a backend embeds
with PROJECT_CONFIG's, which wrote the index."""
import pytest
import yaml

from pipeline.config import parse_project
from pipeline.predict import identify
from pipeline.references import service as svc_mod


@pytest.fixture
def fresh_service():
    svc_mod.set_service(None)
    try:
        yield
    finally:
        svc_mod.set_service(None)


def _cfg(clip) -> dict:
    return {"project_name": "cards", "target_object": "card",
            "stages": {"filter": False, "ground": True, "verify": False, "identify": True},
            "providers": {"identify": {"model": clip.model, "pretrained": clip.pretrained}}}


def test_a_job_without_project_config_embeds_with_its_projects_clip(tiny_clip, fresh_service, monkeypatch):
    monkeypatch.delenv("PROJECT_CONFIG", raising=False)
    cfg = parse_project(_cfg(tiny_clip))
    plan = identify.plan(cfg, "7")  # the default ViT-B-32 cannot be had here: this loads the tiny one or fails
    svc = svc_mod.loaded_service()
    assert (svc.provider.model, svc.provider.pretrained) == (tiny_clip.model, tiny_clip.pretrained)
    assert plan is not None and plan.index_version == 0


def test_the_backends_project_config_wins(tiny_clip, fresh_service, monkeypatch, tmp_path):
    backend_yaml = tmp_path / "backend.yaml"
    data = _cfg(tiny_clip)
    data["providers"]["identify"]["min_cosine"] = 0.5
    backend_yaml.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("PROJECT_CONFIG", str(backend_yaml))
    other = parse_project({**_cfg(tiny_clip), "providers": {"identify": {"model": "ViT-L-14"}}})
    identify.current_version(other, "7")
    assert svc_mod.loaded_service().provider.model == tiny_clip.model  # the index's writer decides
    assert svc_mod.loaded_service().provider.min_cosine == 0.5
