"""The identify service of a `predict` job (the driver and its Ray actors): it embeds with the CLIP model of
the project it was given, also where PROJECT_CONFIG names another YAML (the Docker image sets one) or none;
a backend keeps PROJECT_CONFIG's, which wrote the index."""
import pytest
import yaml

from pipeline.config import parse_project
from pipeline.predict import identify
from pipeline.references import service as svc_mod
from tests.doubles.label_studio import FakeLabelStudio


@pytest.fixture
def fresh_service():
    svc_mod.set_service(None)
    try:
        yield
    finally:
        svc_mod.set_service(None)


def _project(clip) -> dict:
    return {"project_name": "cards", "target_object": "card",
            "stages": {"filter": False, "ground": True, "verify": False, "identify": True},
            "providers": {"identify": {"model": clip.model, "pretrained": clip.pretrained}}}


@pytest.mark.parametrize("project_config", ["unset", "another"])
def test_a_job_embeds_with_its_projects_clip(tiny_clip, fresh_service, monkeypatch, tmp_path, project_config):
    if project_config == "unset":
        monkeypatch.delenv("PROJECT_CONFIG", raising=False)
    else:  # the image's PROJECT_CONFIG: a YAML with the default ViT-B-32, which cannot be had here
        other = tmp_path / "stop-signs.yaml"
        other.write_text(yaml.safe_dump({"project_name": "stop-signs", "target_object": "stop sign"}))
        monkeypatch.setenv("PROJECT_CONFIG", str(other))
    cfg = parse_project(_project(tiny_clip))
    identify.for_job(cfg)
    plan = identify.plan(cfg, "7")  # loads the embedder: the tiny one, or the default fails offline
    svc = svc_mod.loaded_service()
    assert (svc.provider.model, svc.provider.pretrained) == (tiny_clip.model, tiny_clip.pretrained)
    assert plan is not None and plan.index_version == 0


def test_the_single_process_job_sets_it_up(tiny_clip, fresh_service, monkeypatch):
    """`predict` (pipeline/predict/job.py) calls for_job before anything asks for the service."""
    from pipeline.predict import job
    monkeypatch.delenv("PROJECT_CONFIG", raising=False)
    cfg = parse_project(_project(tiny_clip))
    fake = FakeLabelStudio(label_config=('<View><Image name="image" value="$image"/><RectangleLabels name="label" '
                                         'toName="image"><Label value="card"/></RectangleLabels></View>'), tasks=[])
    job.run(fake, cfg, None, 7, dry_run=True, progress=False)
    assert svc_mod.loaded_service().provider.model == tiny_clip.model


def test_a_backend_keeps_project_configs_clip(tiny_clip, fresh_service, monkeypatch, tmp_path):
    backend_yaml = tmp_path / "backend.yaml"
    data = _project(tiny_clip)
    data["providers"]["identify"]["min_cosine"] = 0.5
    backend_yaml.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("PROJECT_CONFIG", str(backend_yaml))
    other = parse_project({**_project(tiny_clip), "providers": {"identify": {"model": "ViT-L-14"}}})
    identify.current_version(other, "7")  # the backend's path: no for_job
    assert svc_mod.loaded_service().provider.model == tiny_clip.model
    assert svc_mod.loaded_service().provider.min_cosine == 0.5
