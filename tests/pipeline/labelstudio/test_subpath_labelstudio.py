"""The Label Studio layer against a real Label Studio 1.23 served under a sub-path and reached with a personal
access token (``label_studio_subpath``: ``LABEL_STUDIO_HOST=http://127.0.0.1:<port>/ls`` behind a proxy that
answers 404 for anything outside /ls, as nginx in front of it would): the client factory and every command's
connection, the pager, the project lookup, use_version and task images."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import requests
from PIL import Image

from pipeline.config import parse_project
from pipeline.importer.ls_project import LabelStudioTarget
from pipeline.labelstudio import client as credentials
from pipeline.labelstudio import lsapi
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.labelstudio.media import fetch_image
from pipeline.labelstudio.projects import AmbiguousProject, find_project
from pipeline.predict import cli as predict_cli
from pipeline.references import fit
from tests.doubles.images import png

pytestmark = pytest.mark.slow

CFG = parse_project({"project_name": "sub-signs", "target_object": "stop sign", "label": "Stop Sign"})


@pytest.fixture(scope="module")
def ls(label_studio_subpath):
    return label_studio_subpath


@pytest.fixture(scope="module")
def pat(ls):
    token = ls.personal_access_token()
    assert token.startswith("eyJ")  # a JWT refresh token, exchanged for access tokens
    return token


@pytest.fixture(scope="module")
def client(ls, pat):
    return credentials.client(ls.url, pat)


@pytest.fixture(scope="module")
def project(client):
    p = client.projects.create(title="sub-signs", label_config=labeling_config(CFG))
    client.projects.import_tasks(p.id, request=[{"image": f"/data/upload/{p.id}/{i}.jpg"} for i in range(5)])
    return p


def refreshes(ls) -> int:
    return sum(1 for method, path, _ in ls.proxy.requests if method == "POST" and "/api/token/refresh" in path)


def past_the_last(ls, since: int) -> list:
    return [r for r in ls.proxy.requests[since:] if r[2] == 404 and "/api/tasks" in r[1]]


def test_every_command_reaches_it_through_the_one_client(ls, pat, client, monkeypatch):
    """predict/evaluate/calibrate/export, import and the identify references connect through the client factory:
    the sub-path is kept for the token refresh (before, the commands and the importer built clients without the
    trailing slash, whose refresh went to /api/token/refresh/ outside /ls) and each client exchanges the
    token once."""
    before = refreshes(ls)
    assert credentials.base_url(client) == ls.url and client.users.whoami().email == ls.email
    sdk, url, key, _ = predict_cli.connect_project(SimpleNamespace(label_studio_url=ls.url, api_key=pat,
                                                                   ls_project=1))
    assert sdk.users.whoami().email == ls.email
    assert credentials.auth_headers(sdk)["Authorization"].startswith("Bearer ")  # an access token, not the PAT
    target = LabelStudioTarget(ls.url, pat)
    assert target.client is sdk and target.find_project("no such project") is None
    monkeypatch.setenv("LABEL_STUDIO_URL", ls.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    for _ in range(2):  # a START_TRAINING each: the same client, no new exchange
        assert fit.label_studio_client() is client and client.projects.list().items is not None
    assert refreshes(ls) - before <= 2  # one per client (the commands' has a longer timeout)
    assert ls.proxy.refused() == []


def test_the_pager_never_asks_past_the_last_page(ls, client, project):
    since = len(ls.proxy.requests)
    typed = [t.id for t in lsapi.items(client.tasks.list, 2, project=project.id)]
    plain = [t["id"] for t in lsapi.items(lsapi.task_json(client), 2, project=project.id, fields="all")]
    references = [t["id"] for t in fit.iter_project_tasks(client, project.id)]  # identify's START_TRAINING
    assert len(typed) == 5 and sorted(typed) == sorted(plain) == sorted(references)
    assert past_the_last(ls, since) == []  # before, identify's raw SDK pager asked for page 2 of 1: 404


def test_a_project_is_found_by_its_exact_title_or_named_ambiguous(client, project):
    assert find_project(client, "sub-signs").id == project.id
    assert find_project(client, "sub") is None  # Label Studio's filter matches it; the title does not
    twin = client.projects.create(title="sub-signs")
    try:
        with pytest.raises(AmbiguousProject, match=f"ids {min(project.id, twin.id)}, {max(project.id, twin.id)}"):
            find_project(client, "sub-signs")
    finally:
        client.projects.delete(twin.id)


def test_use_version_and_the_uncertain_tasks(client, project):
    tasks = sorted(lsapi.items(client.tasks.list, 100, project=project.id), key=lambda t: t.id)
    box = {"from_name": "label", "to_name": "image", "type": "rectanglelabels",
           "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["Stop Sign"]}}
    for t, score in zip(tasks[:3], (0.9, 0.2, 0.6)):
        client.predictions.create(task=t.id, model_version="sub-v1", result=[{**box, "score": score}], score=score)
    with pytest.raises(lsapi.VersionNotStored):
        lsapi.use_version(client, project.id, "sub-v9")
    assert lsapi.use_version(client, project.id, "sub-v1") is not None
    assert client.projects.get(id=project.id).model_version == "sub-v1"
    assert lsapi.use_version(client, project.id, "sub-v1") is None
    assert [t["id"] for t in lsapi.most_uncertain(client, project.id, 2)] == [tasks[1].id, tasks[2].id]


def _png(color) -> bytes:
    return png(Image.new("RGB", (64, 48), color))


def test_task_images_come_through_the_sub_path(ls, pat, client, project, tmp_path):
    """An image uploaded by the importer (its URL without the sub-path), one imported through Label Studio's
    own file import (its URL with it: /ls/data/upload/...), and the absolute URL of either, all fetched with
    the personal access token through /ls."""
    path = tmp_path / "red.png"
    path.write_bytes(_png((220, 20, 20)))
    by_importer = LabelStudioTarget(ls.url, pat).upload(project.id, path)
    r = requests.post(f"{ls.url}/api/projects/{project.id}/import", headers=credentials.auth_headers(client),
                      files={"file": ("blue.png", _png((20, 20, 220)), "image/png")}, timeout=60)
    assert r.status_code == 201, r.text
    (blue,) = [t for t in lsapi.items(client.tasks.list, 100, project=project.id) if "blue" in t.data["image"]]
    by_label_studio = blue.data["image"]
    assert by_label_studio.startswith("/ls/data/upload/")  # Label Studio writes its media URLs with the sub-path
    origin = ls.url.removesuffix("/ls")
    red, blue_rgb = (220, 20, 20), (20, 20, 220)
    for url, rgb in ((by_importer, red), (by_label_studio, blue_rgb), (ls.url + by_importer, red),
                     (origin + by_label_studio, blue_rgb)):
        image = fetch_image(url, blue.id, label_studio_url=ls.url, api_key=pat)
        assert image.size == (64, 48) and np.abs(np.asarray(image)[20, 30].astype(int) - rgb).max() <= 2, url
    assert ls.proxy.refused() == []
