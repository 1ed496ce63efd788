"""Project YAMLs of data-label-factory's shape (its projects/stop-signs.yaml and drones.yaml) load
here: mapped where the key means something here, a warning naming file and key where it does not."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from pipeline.config import ConfigError, load_project, parse_project
from pipeline.config_compat import from_data_label_factory
from tests import REPO

DLF_YAML = """\
project_name: stop-signs
target_object: "stop sign"
description: |
  Smoke test project.

data_root: ~/data-label-factory/stop-signs

r2:
  bucket: drone-falcon
  raw_prefix: stop-signs/raw/
  labels_prefix: stop-signs/labels/
  reviews_prefix: stop-signs/labels/reviews.json

buckets:
  positive/clear_view:
    queries:
      - "stop sign closeup"
      - "red stop sign octagon"
  negative/other_signs:
    queries: ["yield sign"]
    notes: "not a stop sign"
  background/no_signs: ["empty highway"]

falcon_queries:
  - "stop sign"
  - "traffic sign"

prompts:
  filter: |
    Look at this image. Does it show a {target_object}?
    Answer with exactly one word: YES or NO.
  verify: |
    Look carefully at this image crop.
    Question: Is the main object in this crop actually a {query}?
    Answer first with one word: YES, NO, or UNSURE.
  label_describe: "Describe the {target_object}."

backends:
  filter: qwen
  label: pod
  verify: gemma

pod:
  gpu_types: ["NVIDIA L40S"]
  container_disk_gb: 30
"""


@pytest.fixture
def dlf_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    p = tmp_path / "stop-signs.yaml"
    p.write_text(DLF_YAML)
    return p


def test_data_label_factory_yaml_loads_with_its_meaning_mapped(dlf_file, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.config_compat"):
        cfg = load_project(dlf_file)
    assert cfg.project_name == "stop-signs" and cfg.target_object == "stop sign"
    assert cfg.buckets == {"positive/clear_view": ["stop sign closeup", "red stop sign octagon"],
                           "negative/other_signs": ["yield sign"], "background/no_signs": ["empty highway"]}
    assert cfg.queries == ["stop sign", "traffic sign"]
    assert cfg.data_root == str(tmp_path / "home" / "data-label-factory" / "stop-signs")
    assert cfg.prompt("filter").startswith("Look at this image. Does it show a stop sign?")
    assert "actually a stop sign?" in cfg.prompt("verify")
    # backends.filter: qwen -> Qwen2.5-VL-3B behind mlx_vlm.server where data-label-factory runs it
    vlm = cfg.providers.vlm
    assert (vlm.kind, vlm.model, vlm.url) == ("openai", "mlx-community/Qwen2.5-VL-3B-Instruct-4bit",
                                              "http://localhost:8291/v1")
    assert cfg.providers.grounder.kind == "falcon"         # label: pod is Falcon on a RunPod GPU there

    warnings = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    keys = {m.split(": ")[1] for m in warnings}
    assert keys == {"r2", "pod", "buckets.negative/other_signs.notes", "prompts.label_describe", "prompts.verify",
                    "backends.label", "backends.verify"}
    assert all(m.startswith(f"{dlf_file}: ") for m in warnings)      # each names the file
    assert any("backends.verify: 'gemma'" in m for m in warnings)


def test_openrouter_backend_and_explicit_providers(caplog):
    data = {"project_name": "d", "target_object": "drone", "falcon_queries": ["drone"],
            "buckets": {"positive/x": {"queries": ["fpv drone"]}},
            "backends": {"filter": "openrouter", "verify": "openrouter", "label": "falcon"},
            "openrouter": {"model": "meta-llama/llama-4-scout"}}
    with caplog.at_level(logging.WARNING, logger="pipeline.config_compat"):
        cfg = parse_project(data, "drones.yaml")
    vlm = cfg.providers.vlm
    assert (vlm.url, vlm.model, vlm.api_key_env) == ("https://openrouter.ai/api/v1", "meta-llama/llama-4-scout",
                                                     "OPENROUTER_API_KEY")
    assert caplog.records == []                            # everything had a meaning here
    # providers written in our shape win over a backends entry, with a warning naming it
    data["providers"] = {"vlm": {"kind": "openai", "url": "http://127.0.0.1:9/v1"}}
    with caplog.at_level(logging.WARNING, logger="pipeline.config_compat"):
        cfg = parse_project(data, "drones.yaml")
    assert cfg.providers.vlm.url == "http://127.0.0.1:9/v1"
    assert [r.getMessage() for r in caplog.records] == [
        "drones.yaml: backends.filter: ignored: providers.vlm is set"]


def test_our_own_yaml_is_left_alone():
    ours = {"project_name": "p", "target_object": "cat", "buckets": {"positive/x": ["cat"]},
            "prompts": {"verify": "Is this a {target_object}?"}}
    assert from_data_label_factory(ours, "p.yaml") is ours
    with pytest.raises(ConfigError, match=r"p.yaml: bukkets: Extra inputs are not permitted"):
        parse_project({**ours, "bukkets": {}}, "p.yaml")          # typos still fail


def test_label_factory_import_reads_a_data_label_factory_yaml(dlf_file, tmp_path):
    """The command people run first: a dry-run import of their old project file."""
    from tests.doubles.web import FakeWeb
    web = FakeWeb().start()
    try:
        env = {**os.environ, "LF_WIKIMEDIA_API": web.url("/w/api.php"), "PYTHONPATH": str(REPO),
               "HOME": str(tmp_path / "home")}
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "import", "--project", str(dlf_file), "--dry-run",
                            "--sources", "wikimedia", "--no-progress", "--json"],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    finally:
        web.stop()
    assert r.returncode == 0, r.stderr
    assert f"WARNING pipeline.config_compat: {dlf_file}: r2: ignored" in r.stderr
    assert '"queries": 4' in r.stdout                      # the 4 bucket queries were searched
