
import pytest

from pipeline.config import ConfigError, load_project, parse_project
from pipeline.model_version import model_version
from tests import REPO


@pytest.mark.parametrize("name", ["stop-signs.yaml", "drones.yaml"])
def test_shipped_projects_are_complete(name):
    cfg = load_project(REPO / "projects" / name)
    assert cfg.buckets and all(cfg.buckets.values())
    prefixes = {b.split("/")[0] for b in cfg.buckets}
    assert {"positive", "negative"} <= prefixes
    assert cfg.query_labels() and set(cfg.query_labels().values()) <= set(cfg.labels())
    assert cfg.target_object in cfg.prompt("filter") and cfg.target_object in cfg.prompt("verify")
    assert len(cfg.fingerprint()) == 10


def test_falcon_queries_alias_and_label_mapping():
    cfg = parse_project({"project_name": "p", "target_object": "drone", "label": "Drone",
                         "falcon_queries": ["quadcopter", "drone"]})
    assert cfg.query_labels() == {"quadcopter": "Drone", "drone": "Drone"}
    cfg = parse_project({"project_name": "p", "target_object": "drone",
                         "queries": {"Drone": ["uav"], "Spool": ["cable spool"]}})
    assert cfg.query_labels() == {"uav": "Drone", "cable spool": "Spool"}
    assert cfg.label == "Drone" and cfg.labels() == ["Drone", "Spool"]


def test_defaults_fill_in():
    cfg = parse_project({"project_name": "p", "target_object": "cat"})
    assert cfg.label == "cat" and cfg.data_root == "data/p" and cfg.query_labels() == {"cat": "cat"}
    assert cfg.prompt("filter") == "Does this image show a cat? Answer YES or NO."


def test_fingerprint_changes_with_prediction_relevant_fields():
    a = parse_project({"project_name": "p", "target_object": "cat"})
    b = parse_project({"project_name": "p", "target_object": "cat", "thresholds": {"verify": 0.7}})
    c = parse_project({"project_name": "p", "target_object": "cat", "description": "other words"})
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == c.fingerprint()


@pytest.mark.parametrize("data, field, words", [
    ({"project_name": "p", "target_object": "a {x} b"}, "target_object", "must not contain '{'"),
    ({"project_name": "p", "target_object": "cat", "prompts": {"verify": "Is it {thing}?"}},
     "prompts.verify", "unknown placeholder"),
    ({"project_name": "p", "target_object": "cat", "thresholds": {"filter": 1.5}}, "thresholds.filter", "less than"),
    ({"project_name": "p", "target_object": "cat", "providers": {"vlm": {"kind": "openai", "url": None}}},
     "providers.vlm", "needs a url"),
    ({"project_name": "p", "target_object": "cat", "providers": {"grounder": {"kind": "yolo"}}},
     "providers.grounder.kind", "falcon"),
    ({"project_name": "p", "target_object": "cat", "threshold": {}}, "threshold", "Extra inputs"),
    ({"project_name": "p", "target_object": "cat", "buckets": {"../up": ["q"]}}, "buckets", "relative path"),
    ({"target_object": "cat"}, "project_name", "Field required"),
])
def test_errors_name_file_and_field(tmp_path, data, field, words):
    import yaml
    path = tmp_path / "proj.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_project(path)
    msg = str(e.value)
    assert f"{path}: {field}" in msg, msg
    assert words in msg, msg


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("project_name: p\ntarget_object: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML \(line \d+"):
        load_project(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="cannot read project file"):
        load_project(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_project(tmp_path / "list.yaml")


def test_literal_braces_in_prompt_allowed():
    cfg = parse_project({"project_name": "p", "target_object": "cat",
                         "prompts": {"filter": "Answer {{YES}} or {{NO}}: a {target_object}?"}})
    assert cfg.prompt("filter") == "Answer {YES} or {NO}: a cat?"


def test_env_overrides_point_providers_elsewhere():
    path = REPO / "projects" / "stop-signs.yaml"
    cfg = load_project(path, environ={})
    out = load_project(path, environ={"LF_VLM_URL": "http://model-server:8000/v1", "LF_GROUNDER_MODEL": "/models/owl",
                                      "LF_CLIP_MODEL": ""})  # empty: not set
    assert out.providers.vlm.url == "http://model-server:8000/v1"
    assert out.providers.grounder.model == "/models/owl"
    assert out.providers.identify.model == cfg.providers.identify.model
    assert out.buckets == cfg.buckets and out.fingerprint() != cfg.fingerprint()
    assert model_version(out) != model_version(cfg)  # other models, other predictions
    with pytest.raises(ConfigError, match="stop-signs.yaml with LF_GROUNDER_KIND from the environment: "
                                          "providers.grounder.kind"):
        load_project(path, environ={"LF_GROUNDER_KIND": "yolo"})


def test_load_project_reads_the_process_environment(tmp_path, monkeypatch):
    """Every entry point resolves through load_project, so LF_* reaches all of them."""
    monkeypatch.setenv("LF_VLM_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("LF_VLM_MODEL", "served-model")
    cfg = load_project(REPO / "projects" / "stop-signs.yaml")
    assert (cfg.providers.vlm.url, cfg.providers.vlm.model) == ("http://127.0.0.1:1/v1", "served-model")


def test_one_model_version():
    cfg = load_project(REPO / "projects" / "stop-signs.yaml", environ={})
    p = cfg.providers
    base = f"stop-signs-{cfg.fingerprint()}-{p.vlm.kind}+{p.grounder.identity()}"
    assert model_version(cfg) == base
    assert model_version(cfg, 12) == base + "+identify-v12"
    assert model_version(None, 3) == "identify-v3"  # the stand-alone identify backend
    with pytest.raises(ValueError):
        model_version(None)
