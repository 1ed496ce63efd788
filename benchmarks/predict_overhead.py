"""/predict through gunicorn over HTTP vs calling the pipeline directly on the same tasks, in one run.

Both sides run the same project (ground only, OWLv2 with google/owlv2-base-patch16-ensemble's published
shape, random weights, 960x960 input) on the same images; calls alternate between the two sides.

* direct: ``open_image(file)`` -> ``Pipeline.run`` -> ``Layout.prediction`` (the output layer) in this process;
* HTTP:   ``POST /predict`` with one Label Studio task to ``backends._wsgi`` under gunicorn (1 worker), which
  fetches the task image over loopback from a local file server (ALLOWED_IMAGE_HOSTS), runs the same
  pipeline and answers Label Studio JSON.

    .venv/bin/python benchmarks/predict_overhead.py            # OWLv2-base shape
    .venv/bin/python benchmarks/predict_overhead.py --quick    # tiny OWLv2, seconds (sanity only)

Goal from issue 6: HTTP overhead <= 5 % of the direct time.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
import yaml  # noqa: E402

from benchmarks._common import built_once, fmt_s, log, machine, median, now, print_config, table  # noqa: E402


def owlv2_dir(shape: str) -> Path:
    from pipeline.tiny.detectors import build_owlv2
    return built_once(f"owlv2-{shape}-random", f"OWLv2 ({shape} shape, random weights)",
                      lambda out: build_owlv2(out, shape=shape))


def project_yaml(model: Path, out: Path) -> Path:
    data = {"project_name": "bench", "target_object": "stop sign", "label": "Stop Sign",
            "stages": {"filter": False, "ground": True, "verify": False},
            "thresholds": {"grounding": 0.0, "max_boxes": 10},
            "providers": {"vlm": {"kind": "transformers", "model": "unused"},
                          "grounder": {"kind": "owlv2", "model": str(model), "device": "cpu"}}}
    out.write_text(yaml.safe_dump(data))
    return out


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve_files(root: Path):
    handler = functools.partial(QuietHandler, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny OWLv2, 3 rounds")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the images (default 3)")
    a = ap.parse_args(argv)
    shape = "tiny" if a.quick else "base"
    from pipeline.cascade import Pipeline
    from pipeline.config import load_project
    from pipeline.images import open_image
    from pipeline.samples import write_samples
    from pipeline.stack.processes import Service, free_port

    t_start = now()
    tmp = Path(tempfile.mkdtemp(prefix="lf-bench-predict-"))
    images = write_samples(tmp / "images")
    model = owlv2_dir(shape)
    proj = project_yaml(model, tmp / "bench.yaml")
    cfg = load_project(proj)
    files = serve_files(tmp / "images")
    port = free_port()
    env = {**os.environ, "PROJECT_CONFIG": str(proj), "MODEL_DIR": str(tmp / "model-dir"), "HOST": "127.0.0.1",
           "PORT": str(port), "WORKERS": "1", "THREADS": "2", "LOG_LEVEL": "WARNING",
           "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{files.server_address[1]}", "HF_HUB_OFFLINE": "1"}
    backend = Service("ML backend", [sys.executable, "-m", "backends._wsgi"], env, tmp / "backend.log")
    try:
        backend.wait_http(f"http://127.0.0.1:{port}/health", 300)
        direct = Pipeline(cfg).load()
        session = requests.Session()
        from pipeline.labelstudio.labeling_config import labeling_config
        label_config = labeling_config(cfg)

        from label_studio_sdk.label_interface import LabelInterface

        from pipeline.labelstudio import Layout
        layout = Layout.from_config(LabelInterface(config=label_config))

        def run_direct(path: Path):
            im = open_image(path)
            res = direct.run(im)
            return layout.prediction(res.detections, res.width, res.height, "direct")[0]["result"]

        def run_http(path: Path):
            url = f"http://127.0.0.1:{files.server_address[1]}/{path.name}"
            body = {"tasks": [{"id": 1, "data": {"image": url}}], "label_config": label_config, "project": "1.0"}
            r = session.post(f"http://127.0.0.1:{port}/predict", json=body, timeout=600)
            r.raise_for_status()
            out = r.json()
            if not out["results"] or "result" not in out["results"][0]:
                raise SystemExit(f"backend gave no prediction: {out}; log:\n{backend.log_tail()}")
            return out["results"][0]["result"]

        log("warming up both sides ...")
        for p in images[:2]:
            run_direct(p)
            run_http(p)
        t_direct, t_http = [], []
        for rnd in range(a.rounds):
            for i, p in enumerate(images):
                order = (("d", "h") if (rnd + i) % 2 == 0 else ("h", "d"))
                for side in order:
                    t0 = now()
                    n = len(run_direct(p) if side == "d" else run_http(p))
                    (t_direct if side == "d" else t_http).append(now() - t0)
                    assert n >= 0
        log(f"{len(t_direct)} calls per side done")
    finally:
        backend.stop()
        files.shutdown()

    md, mh = median(t_direct), median(t_http)
    total_d, total_h = sum(t_direct), sum(t_http)
    print_config("predict_overhead: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "model": f"OWLv2 {shape} shape "
                 f"({'google/owlv2-base-patch16-ensemble, 960x960' if shape == 'base' else 'test model'})"
                 ", random weights; ground stage only (filter/verify off), 1 query",
        "tasks": f"{len(images)} sample images (pipeline/samples.py, 480-800 px), {a.rounds} rounds, sides alternate",
        "http": "POST /predict, 1 task per request, gunicorn 1 worker x 2 threads (backends._wsgi), image fetched "
                "over loopback from an allowed host",
        **machine(),
    })
    print(table(["side", "calls", "median s/task", "total s", "ratio (medians)", "ratio (totals)"], [
        ["pipeline called directly", len(t_direct), fmt_s(md), fmt_s(total_d), "1.00x", "1.00x"],
        ["/predict via gunicorn over HTTP", len(t_http), fmt_s(mh), fmt_s(total_h), f"{mh / md:.3f}x",
         f"{total_h / total_d:.3f}x"],
    ]))
    over = (total_h / total_d - 1) * 100
    print(f"\nHTTP overhead: {over:+.1f} % of the direct time by totals, {(mh / md - 1) * 100:+.1f} % by medians "
          f"(goal <= 5 %: {'met' if over <= 5 else 'NOT met'}); wall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
