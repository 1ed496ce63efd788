from __future__ import annotations

import pytest
import yaml

from backends.autolabel.model import AutoLabelModel
from backends.base import init_app
from pipeline.cascade import Pipeline
from pipeline.config import parse_project
from pipeline.labelstudio import versions as project_version
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.predict import runner
from tests.backends.autolabel.signs import BOXES, PROJECT, TOKEN
from tests.doubles.providers import KnownGrounder, KnownVLM
from tests.doubles.servers import FileServer


@pytest.fixture
def ls_files():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def backend(tmp_path, monkeypatch, ls_files):
    """Returns make(project=..., vlm=..., grounder=...) -> (test client, label config, vlm, grounder)."""
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "model-dir"))
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_files.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    monkeypatch.setenv("PROJECTS_DIR", str(tmp_path / "projects"))
    for k in ("ALLOWED_IMAGE_HOSTS", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "PREDICT_CONCURRENCY"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "projects").mkdir()
    runner.pipelines.clear()
    kept = []  # (project, version) the backend asked to make the Label Studio project's model_version
    monkeypatch.setattr(project_version, "keep", lambda project_id, version: kept.append((project_id, version)))

    def make(project=None, vlm=None, grounder=None, label_config=None):
        data = project or PROJECT
        path = tmp_path / "projects" / f"{data['project_name']}.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("PROJECT_CONFIG", str(path))
        vlm = vlm or KnownVLM(0.9)
        grounder = grounder or KnownGrounder(BOXES)
        monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda cfg: Pipeline(cfg, vlm=vlm, grounder=grounder))
        runner.pipelines.clear()
        config = label_config or labeling_config(parse_project(data))
        return init_app(AutoLabelModel).test_client(), config, vlm, grounder

    make.kept = kept
    yield make
    runner.pipelines.clear()
