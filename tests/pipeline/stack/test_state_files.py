"""`up`'s own files (admin login, sample images, tiny models): a write or build that dies midway is done
again on the next run, never read back half-written."""
import json

import pytest
from PIL import Image

from pipeline.config import load_project
from pipeline.samples import write_samples
from pipeline.stack import models
from pipeline.stack.labelstudio import load_or_create_admin
from tests.dying_writes import assert_died_of_a_full_disk, run_until_disk_full, stray_files


def test_admin_file_cut_short_by_a_full_disk_is_created_again(tmp_path):
    proc = run_until_disk_full("from pathlib import Path\nfrom pipeline.stack.labelstudio import load_or_create_admin",
                               f"load_or_create_admin(Path({str(tmp_path)!r}))", limit=20)
    assert_died_of_a_full_disk(proc)
    assert stray_files(tmp_path, set()) == []
    admin = load_or_create_admin(tmp_path)  # a half-written file would not parse here
    path = tmp_path / "label-factory-admin.json"
    assert json.loads(path.read_text())["token"] == admin.token and len(admin.token) == 40
    assert path.stat().st_mode & 0o777 == 0o600


def test_sample_image_cut_short_by_a_full_disk_is_drawn_again(tmp_path):
    proc = run_until_disk_full("from pathlib import Path\nfrom pipeline.samples import write_samples",
                               f"write_samples(Path({str(tmp_path)!r}))", limit=4096)
    assert_died_of_a_full_disk(proc)
    for path in write_samples(tmp_path):
        with Image.open(path) as im:
            im.load()  # a truncated PNG raises here


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
    from pipeline.tiny import detectors, qwen
    monkeypatch.setattr(qwen, "build", dies_midway)
    monkeypatch.setattr(detectors, "build_owlv2", builds)
    src, cache = "projects/stop-signs.yaml", tmp_path / "cache"
    cfg = load_project(src)
    with pytest.raises(KeyboardInterrupt):
        models.tiny_project(cfg, src, cache, tmp_path / "p.yaml")
    assert not (cache / "qwen2_5_vl").exists()
    monkeypatch.setattr(qwen, "build", builds)
    models.tiny_project(cfg, src, cache, tmp_path / "p.yaml")
    assert (cache / "qwen2_5_vl" / "config.json").exists() and len(built) == 2  # the VLM again, OWLv2 once
    assert stray_files(cache, {"qwen2_5_vl/config.json", "owlv2/config.json"}) == []
