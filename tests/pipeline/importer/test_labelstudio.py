"""Importer against a real Label Studio (session fixture ``label_studio``, tests/fixtures_labelstudio.py)
fed by the loopback web replay of tests/doubles/web.py."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from pipeline.config import parse_project
from pipeline.importer.manifest import Manifest
from pipeline.importer.runner import run_import
from pipeline.labelstudio.labeling_config import labeling_config
from tests.doubles.web import BUCKETS, build_web, fast_opts

pytestmark = pytest.mark.slow
META = ("bucket", "source", "license", "attribution", "query", "page_url")


@pytest.fixture
def web(images, monkeypatch):  # noqa: F811
    w = build_web(images)
    monkeypatch.setenv("LF_WIKIMEDIA_API", w.url("/w/api.php"))
    monkeypatch.setenv("LF_OPENVERSE_API", w.url("/v1"))
    yield w
    w.stop()


def project_by_title(client, title):
    found = [p for p in client.projects.list() if p.title == title]
    assert len(found) == 1, [p.title for p in client.projects.list()]
    return client.projects.get(found[0].id)


def tasks_of(client, project_id):
    return list(client.tasks.list(project=project_id, fields="all"))


def test_import_into_label_studio(web, label_studio, tmp_path):
    cfg = parse_project({"project_name": "importer-e2e", "target_object": "stop sign",
                         "extra_labels": ["Traffic light"], "buckets": BUCKETS,
                         "data_root": str(tmp_path / "data")})
    client = label_studio.client()
    opts = dict(sources=["wikimedia", "openverse"], label_studio_url=label_studio.url,
                api_key=label_studio.token)
    s = run_import(cfg, fast_opts(connect_backend=web.base, **opts))
    assert s.downloaded == 4 and s.imported == 4 and s.already_imported == 0
    assert "created project" in s.label_studio

    project = project_by_title(client, cfg.project_name)
    assert project.label_config.strip() == labeling_config(cfg).strip()
    tasks = tasks_of(client, project.id)
    assert len(tasks) == 4

    manifest = Manifest.load(cfg.data_root)
    key = f"{label_studio.url}#{project.id}"
    by_sha = {e["sha256"]: e for e in manifest}
    assert sorted(e["label_studio"][key] for e in manifest) == sorted(t.id for t in tasks)
    for t in tasks:
        e = by_sha[t.meta["sha256"]]
        assert {k: t.meta[k] for k in META} == {k: e[k] for k in META}
        assert e["label_studio"][key] == t.id
        # data.image is the uploaded file, served by Label Studio
        assert t.data["image"].startswith("/data/upload/")
        r = requests.get(label_studio.url + t.data["image"], headers=label_studio.headers(), timeout=30)
        assert r.status_code == 200
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(manifest.file(e).read_bytes()).digest()
    assert {t.meta["bucket"] for t in tasks} == set(BUCKETS)
    lic = {t.meta["source"]: t.meta["license"] for t in tasks if t.meta["bucket"] == "positive/street"}
    assert lic == {"wikimedia": "CC BY-SA 4.0", "openverse": "CC BY-SA 4.0"}

    # --connect-backend: registered on the project, Label Studio asked it for predictions
    backends = client.ml.list(project=project.id)
    assert [b.url.rstrip("/") for b in backends] == [web.base]
    assert "registered backend" in s.backend
    assert any(p == "/predict" for p, _ in web.ml_requests)
    preds = list(client.predictions.list(project=project.id))
    assert len(preds) == 4 and {p.model_version for p in preds} == {"fake-1"}

    # Second run: project reused, nothing downloaded, nothing imported.
    s2 = run_import(cfg, fast_opts(connect_backend=web.base, **opts))
    assert "reused project" in s2.label_studio
    assert s2.downloaded == 0 and s2.imported == 0 and s2.already_imported == 4
    assert "already registered" in s2.backend
    assert len(tasks_of(client, project.id)) == 4
    assert len(client.ml.list(project=project.id)) == 1

    # Manifest lost (fresh data_root): images come down again, but Label Studio's own tasks
    # (meta.sha256) keep them from being imported twice.
    cfg_b = cfg.model_copy(update={"data_root": str(tmp_path / "other")})
    s3 = run_import(cfg_b, fast_opts(**opts))
    assert s3.downloaded == 4 and s3.imported == 0 and s3.already_imported == 4
    assert len(tasks_of(client, project.id)) == 4
    assert all(e["label_studio"][key] for e in Manifest.load(cfg_b.data_root))


def test_import_with_local_files_storage(web, label_studio):
    """Label Studio and the images share a disk: tasks point at /data/local-files/?d=..."""
    root = Path(label_studio.files_dir)
    cfg = parse_project({"project_name": "importer-local-files", "target_object": "stop sign",
                         "buckets": {"positive/street": ["stop sign"]},
                         "data_root": str(root / "importer-local")})
    s = run_import(cfg, fast_opts(sources=["wikimedia"], label_studio_url=label_studio.url,
                                  api_key=label_studio.token, storage="local-files", local_files_root=str(root)))
    assert s.downloaded == 2 and s.imported == 2
    client = label_studio.client()
    project = project_by_title(client, cfg.project_name)
    tasks = tasks_of(client, project.id)
    assert len(tasks) == 2
    for t in tasks:
        assert t.data["image"].startswith("/data/local-files/?d=importer-local/positive/street/")
        r = requests.get(label_studio.url + t.data["image"], headers=label_studio.headers(), timeout=30)
        assert r.status_code == 200 and r.content[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1",
                                                          b"\xff\xd8\xff\xdb")
    storages = client.import_storage.local.list(project=project.id)
    assert len(storages) == 1
    s2 = run_import(cfg, fast_opts(sources=["wikimedia"], label_studio_url=label_studio.url,
                                   api_key=label_studio.token, storage="local-files", local_files_root=str(root)))
    assert s2.imported == 0 and s2.already_imported == 2
    assert len(client.import_storage.local.list(project=project.id)) == 1


def test_upload_with_personal_access_token(web, label_studio, tmp_path):
    """A personal access token (JWT refresh token) works for the SDK calls and the raw file upload."""
    pat = label_studio.personal_access_token()
    cfg = parse_project({"project_name": "importer-pat", "target_object": "stop sign",
                         "buckets": {"positive/street": ["stop sign"]}, "data_root": str(tmp_path / "d")})
    s = run_import(cfg, fast_opts(sources=["wikimedia"], label_studio_url=label_studio.url, api_key=pat))
    assert s.imported == 2
    tasks = tasks_of(label_studio.client(), project_by_title(label_studio.client(), cfg.project_name).id)
    assert len(tasks) == 2 and all(t.data["image"].startswith("/data/upload/") for t in tasks)
