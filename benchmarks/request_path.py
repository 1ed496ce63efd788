"""One /predict through the auto-label backend (Flask test client, scripted providers, after one warm-up
request): the library and backend functions it calls (distinct and in all, and their modules), how often
model_version is computed, how often the labeling config is parsed (LabelInterface) and read into a Layout.

    .venv/bin/python benchmarks/request_path.py [CODE_DIR]

CODE_DIR: a checkout to measure instead of this one (``git archive 3368982 | tar -x -C DIR``: the layout
before pipeline/predict and pipeline/labelstudio took the backend's job code is understood too)."""
from __future__ import annotations

import collections
import io
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path.cwd()
sys.path.insert(0, str(REPO))
os.environ.setdefault("LF_ANSWER_CACHE", "0")


def main():
    import yaml
    from label_studio_sdk.label_interface import LabelInterface
    from PIL import Image

    import backends.autolabel.model as am
    from backends.base import init_app
    from tests.doubles.providers import KnownGrounder, KnownVLM
    from tests.doubles.servers import FileServer
    try:
        from pipeline.cascade import Pipeline
        from pipeline.labelstudio import versions
        from pipeline.labelstudio.labeling_config import labeling_config
        from pipeline.predict import runner
    except ImportError:
        from pipeline.labelconfig import labeling_config
        from pipeline.pipeline import Pipeline

        from backends.autolabel import project_version as versions
        from backends.autolabel import runner
    from pipeline.config import parse_project
    from pipeline.labelstudio import layout as layout_mod

    tmp = Path(tempfile.mkdtemp())
    project = {"project_name": "signs", "target_object": "stop sign", "label": "Stop Sign",
               "falcon_queries": {"Stop Sign": ["stop sign"]}}
    (tmp / "p.yaml").write_text(yaml.safe_dump(project))
    files = FileServer()
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 30, 30)).save(buf, "JPEG")
    files.files["/data/upload/5/a.jpg"] = buf.getvalue()
    os.environ.update(PROJECT_CONFIG=str(tmp / "p.yaml"), MODEL_DIR=str(tmp / "m"), LABEL_STUDIO_URL=files.url,
                      LABEL_STUDIO_API_KEY="0123456789abcdef0123456789abcdef01234567", PROJECTS_DIR=str(tmp))
    runner.PIPELINE_FACTORY = lambda cfg: Pipeline(cfg, vlm=KnownVLM(0.9),
                                                   grounder=KnownGrounder({"stop sign": [(.1, .1, .5, .5)]}))
    versions.keep = lambda *a: None
    config = labeling_config(parse_project(project))
    client = init_app(am.AutoLabelModel).test_client()
    body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}], "project": "5.1", "label_config": config}
    client.post("/predict", json=body)  # warm: pipeline built, models "loaded"

    counts = collections.Counter()
    roots = (str(REPO / "pipeline"), str(REPO / "backends"))

    def prof(frame, event, arg):
        if event == "call":
            f = frame.f_code.co_filename
            if f.startswith(roots):
                counts[(Path(f).relative_to(REPO).as_posix(), frame.f_code.co_name)] += 1
    parses = collections.Counter()
    real_li_init = LabelInterface.__init__

    def li_init(self, *a, **k):
        parses["LabelInterface"] += 1
        return real_li_init(self, *a, **k)
    LabelInterface.__init__ = li_init
    real_from_config = layout_mod.Layout.from_config.__func__

    def from_config(cls, *a, **k):
        parses["Layout.from_config"] += 1
        return real_from_config(cls, *a, **k)
    layout_mod.Layout.from_config = classmethod(from_config)
    sys.setprofile(prof)
    r = client.post("/predict", json=body)
    sys.setprofile(None)
    assert r.status_code == 200, r.data
    files.close()
    mv = sum(n for (f, fn), n in counts.items()
             if fn in ("model_version", "base_version") and f.startswith("pipeline/"))
    reads = getattr(layout_mod.Layout, "_read", None)  # from_config reads the config itself where there is none
    parses["Layout read"] = (counts.get(("pipeline/labelstudio/layout.py", "_read"), 0) if reads
                             else parses["Layout.from_config"])
    modules = sorted({f for f, _ in counts})
    print(f"code under test: {REPO}")
    print(f"functions of pipeline/ and backends/ called: {len(counts)} distinct, {sum(counts.values())} calls, "
          f"in {len(modules)} modules")
    print(f"model_version computed: {mv}; labeling config parsed (LabelInterface): {parses['LabelInterface']}; "
          f"layouts read from it: {parses['Layout read']}")
    print("modules:", ", ".join(modules))


if __name__ == "__main__":
    main()
