"""One /predict's path through the auto-label backend: model_version computed once per request, the
labeling config parsed once per config (not per request), the Falcon backend decided once per process."""
from __future__ import annotations

import pytest
from label_studio_sdk.label_interface import LabelInterface

from pipeline import model_version as mv
from pipeline.labelstudio import layout as layout_mod
from tests.doubles.images import jpeg_bytes


@pytest.fixture
def counted(monkeypatch):
    from backends.base import model as base_model
    monkeypatch.setattr(base_model, "_interfaces", type(base_model._interfaces)())  # none parsed by other tests
    counts = {"base_version": 0, "LabelInterface": 0, "layout": 0}
    real_base, real_init, real_read = mv.base_version, LabelInterface.__init__, layout_mod.Layout._read.__func__

    def base_version(cfg):
        counts["base_version"] += 1
        return real_base(cfg)

    def init(self, *a, **k):
        counts["LabelInterface"] += 1
        return real_init(self, *a, **k)

    def read(cls, li):
        counts["layout"] += 1
        return real_read(cls, li)
    monkeypatch.setattr(mv, "base_version", base_version)
    for module in ("backends.autolabel.model", "pipeline.predict.runner", "pipeline.predict.identify"):
        monkeypatch.setattr(f"{module}.base_version", base_version)
    monkeypatch.setattr(LabelInterface, "__init__", init)
    monkeypatch.setattr(layout_mod.Layout, "_read", classmethod(read))
    return counts


def _predict(client, config, tasks) -> dict:
    r = client.post("/predict", json={"tasks": tasks, "project": "5.1700000000", "label_config": config})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert all(p and p["result"] for p in r.json["results"])
    return r.json


def test_one_model_version_per_request_and_one_parse_per_config(backend, ls_files, counted):  # noqa: F811
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((64, 48))
    client, config, _, _ = backend()
    tasks = [{"id": i, "data": {"image": "/data/upload/5/a.jpg"}} for i in (1, 2)]
    first = _predict(client, config, tasks)
    assert counted["base_version"] == 1 and counted["LabelInterface"] == 1 and counted["layout"] == 1
    second = _predict(client, config, tasks)
    assert second["model_version"] == first["model_version"]
    assert counted == {"base_version": 2, "LabelInterface": 1, "layout": 1}  # the config was not parsed again
    other = config.replace('<View>', '<View><Header value="another project"/>', 1)
    _predict(client, other, tasks)
    assert counted["LabelInterface"] == 2 and counted["layout"] == 2  # a changed config is read again
