"""Hostile image URLs stored in a real Label Studio 1.23 project reach nothing that is not allowed, through
each job that fetches task images with ``pipeline.labelstudio.media``: `label-factory predict`, `label-factory export`
and identify's reference crops (a Start Training rebuild). A canary on 127.0.0.2, a loopback alias that is
not allowed, records every connection: none arrives, none carries a token."""
from __future__ import annotations

import json
import time

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_project
from pipeline.labelstudio import lsapi
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.predict import runner
from pipeline.references.fit import ProjectIndexes, fit, label_studio_image_fetcher
from tests.doubles.servers import Canary, FileServer

pytestmark = pytest.mark.slow

# {c}: the canary, {ls}: Label Studio's host:port, {a}: the allowed host
SPELLINGS = [
    "http://{c}\\@{ls}/data/upload/{p}/x.jpg",
    "hTtP://{c}\\@{ls}/data/upload/{p}/x.jpg",
    "http://{c}%5C@{ls}/data/upload/{p}/x.jpg",
    "http://{c}%40{ls}/data/upload/{p}/x.jpg",
    "http://{c}\t@{ls}/data/upload/{p}/x.jpg",
    "http://{ls}@{c}/data/upload/{p}/x.jpg",
    "http://{c}\\@{a}/x.jpg",
    "http://[::ffff:127.0.0.2%25lo]:{cp}/x.jpg",
    "http://{c}/x.jpg",
    "http://{a}/hop.jpg",  # the allowed host redirects to the canary, spelled with a backslash
]


@pytest.fixture
def hostile_project(label_studio, tmp_path, monkeypatch):
    canary, allowed = Canary(), FileServer()
    ls_netloc = label_studio.url.split("//", 1)[1]
    allowed.files["/hop.jpg"] = (302, {"Location": f"http://{canary.netloc}\\@{ls_netloc}/data/upload/1/x.jpg"}, b"")
    monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", allowed.url)
    for k in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PREDICT_CONCURRENCY"):
        monkeypatch.delenv(k, raising=False)
    path = tmp_path / "hostile-urls.yaml"
    path.write_text(yaml.safe_dump({"project_name": f"hostile-urls-{time.time_ns()}", "target_object": "stop sign",
                                    "label": "Stop Sign", "falcon_queries": ["stop sign"]}))
    cfg = load_project(path)
    ls = label_studio.client()
    project = ls.projects.create(title=cfg.project_name, label_config=labeling_config(cfg))
    urls = [t.format(c=canary.netloc, cp=canary.port, ls=ls_netloc, a=allowed.url.split("//", 1)[1], p=project.id)
            for t in SPELLINGS]
    ls.projects.import_tasks(project.id, request=[{"image": u} for u in urls])
    tasks = list(lsapi.items(ls.tasks.list, project=project.id))
    assert sorted(t.data["image"] for t in tasks) == sorted(urls)
    region = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 100,
              "original_height": 100, "value": {"x": 10, "y": 10, "width": 30, "height": 30, "rotation": 0,
                                                "rectanglelabels": ["Stop Sign"]}}
    for t in tasks:
        ls.annotations.create(id=t.id, result=[region])
    yield path, project, tasks, canary
    canary.close()
    allowed.close()


def _untouched(canary):
    time.sleep(0.2)
    assert canary.received == [], f"{len(canary.received)} connection(s) reached 127.0.0.2: {canary.received[:2]}"


def test_predict_export_and_identify_fetch_nothing_from_a_host_that_is_not_allowed(
        label_studio, hostile_project, tiny_qwen_dir, tiny_owlv2_dir, clip_embedder, tmp_path, capsys, monkeypatch):
    path, project, tasks, canary = hostile_project
    data = yaml.safe_load(path.read_text())
    data["providers"] = {"vlm": {"kind": "transformers", "model": str(tiny_qwen_dir), "device": "cpu"},
                         "grounder": {"kind": "owlv2", "model": str(tiny_owlv2_dir), "device": "cpu"}}
    path.write_text(yaml.safe_dump(data))
    runner.pipelines.clear()
    connection = ["--label-studio-url", label_studio.url, "--api-key", label_studio.token]

    # predict: every task fails with the refusal, none is predicted
    assert main(["predict", "--project", str(path), *connection, "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["seen"], summary["predicted"], summary["failed"]) == (len(tasks), 0, len(tasks)), summary
    assert all("refusing" in f["reason"] for f in summary["failures"]), summary["failures"]
    _untouched(canary)

    # export: every annotated task fails its image, the export says so
    out = tmp_path / "export"
    main(["export", "--ls-project", str(project.id), "--out", str(out), *connection, "--quiet", "--json"])
    text = capsys.readouterr()
    assert "refusing" in text.out + text.err
    _untouched(canary)

    # identify: a Start Training rebuild cuts reference crops from every annotated task
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    res = fit("START_TRAINING", {"project": {"id": project.id}}, ProjectIndexes(tmp_path / "identify"),
              label_studio_image_fetcher(), clip_embedder, label_studio.client())
    assert len(res["skipped"]) == len(tasks) and all("refusing" in s["reason"] for s in res["skipped"]), res
    _untouched(canary)
    assert canary.tokens() == []
