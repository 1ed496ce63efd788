"""Hostile input against the backend, each case in its own process, all traffic on loopback:

* ``endless``: a 1,000 MB chunked body without Content-Length, MAX_IMAGE_BYTES = 50 MB: peak RSS of
  the fetching process, bytes the server got out, seconds;
* ``drip``: a server sending 1 byte/s for 20 s, IMAGE_FETCH_TIMEOUT = 5 s: seconds until the fetch gives up;
* ``slow-images``: 4 requests whose image takes 15 s, then an ordinary one-task /predict
  (PREDICT_CONCURRENCY = 4): its seconds;
* ``hung-vlm``: a VLM server that accepts and never answers (timeout 10 s, 3 retries),
  PREDICT_DEADLINE = 15 s: seconds of a one-task /predict and its error;
* ``webhook``: an annotation webhook while embedding takes 3 s: seconds until the answer;
* ``thin-WxH`` (4000x27, 6000x40): a one-task /predict of a W x H PNG strip, ground only, OWLv2 with
  google/owlv2-base-patch16-ensemble's published shape (random weights, its real 960 px pre-processing): peak
  RSS growth, seconds, the answer or the error; then the same strip again with an ordinary photo's /predict
  sent 0.5 s after it, PREDICT_CONCURRENCY = 1: the ordinary one's seconds (and alone, before).
  ``thin-6000x40-allowed``: the same with ``budgets.max_aspect_ratio: null``. A data limit of
  ``LF_BENCH_GUARD_GB`` (default 8) GB over the warm process makes a task that would take more fail instead
  of taking the machine's memory;
* ``big-png``, ``big-webp``: a 10240x7712 (79 MP) RGBA PNG or WebP decoded at the default working resolution
  (``open_photo``; the file written by another process first): peak RSS growth, seconds, or the refusal;
* ``backslash``: one /predict whose tasks are the URL spellings of tests/doubles/urls.py (backslash,
  userinfo, percent-escapes, tabs, IPv6 zone ids, numeric hosts, ...) aimed at a canary on 127.0.0.2 that is
  not allowed: tasks refused, connections and Label Studio tokens that reached the canary.

    .venv/bin/python benchmarks/hostile_input.py [--only endless,drip] [--code DIR]

``--code DIR`` runs the cases against the ``backends``/``pipeline`` packages in DIR instead (e.g.
``git archive main backends pipeline | tar -x -C /tmp/lf-main``), to print before/after side by side
over two runs; the loopback servers come from this checkout's ``tests/doubles/servers.py``."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("endless", "drip", "slow-images", "hung-vlm", "webhook", "backslash", "thin-4000x27", "thin-6000x40",
         "thin-6000x40-allowed", "big-png", "big-webp")


def _rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_endless() -> dict:
    from functools import partial

    from pipeline.labelstudio.media import HostPolicy, fetch_image
    from tests.doubles.servers import RawServer, endless_chunked
    os.environ["MAX_IMAGE_BYTES"] = str(50_000_000)
    server = RawServer(partial(endless_chunked, safety_stop=1_000_000_000))
    rss0, t0 = _rss_mb(), time.monotonic()
    try:
        fetch_image(server.url + "/huge.jpg", policy=HostPolicy("", [server.url]))
        error = ""
    except Exception as e:  # noqa: BLE001 - the refusal is the expected outcome
        error = f"{type(e).__name__}: {e}"
    seconds = time.monotonic() - t0
    server.done.wait(30)
    return {"peak_rss_mb": round(_rss_mb()), "rss_before_mb": round(rss0), "server_sent_mb": round(server.sent / 1e6),
            "seconds": round(seconds, 1), "error": error[:160]}


def case_drip() -> dict:
    from functools import partial

    from pipeline.labelstudio.media import HostPolicy, fetch_image
    from tests.doubles.servers import RawServer, drip_body
    os.environ["IMAGE_FETCH_TIMEOUT"] = "5"

    server = RawServer(partial(drip_body, seconds=20.0, interval=1.0))
    t0 = time.monotonic()
    try:
        fetch_image(server.url + "/slow.jpg", policy=HostPolicy("", [server.url]))
        error = ""
    except Exception as e:  # noqa: BLE001
        error = f"{type(e).__name__}: {e}"
    return {"seconds": round(time.monotonic() - t0, 1), "error": error[:160]}


def _autolabel_client(tmp: Path, files_url: str, vlm, grounder):
    import yaml

    from backends.autolabel.model import AutoLabelModel
    from backends.base import init_app
    from pipeline.cascade import Pipeline
    from pipeline.config import parse_project
    from pipeline.labelstudio.labeling_config import labeling_config
    from pipeline.predict import runner
    project = {"project_name": "signs", "target_object": "stop sign", "label": "Stop Sign",
               "falcon_queries": {"Stop Sign": ["stop sign"]}}
    (tmp / "p.yaml").write_text(yaml.safe_dump(project))
    os.environ.update(PROJECT_CONFIG=str(tmp / "p.yaml"), MODEL_DIR=str(tmp / "models"), LABEL_STUDIO_URL=files_url,
                      LABEL_STUDIO_API_KEY="0123456789abcdef0123456789abcdef01234567", PROJECTS_DIR=str(tmp))
    runner.PIPELINE_FACTORY = lambda cfg: Pipeline(cfg, vlm=vlm, grounder=grounder)
    return init_app(AutoLabelModel), labeling_config(parse_project(project))


def _predict(app, config, url) -> tuple[float, dict]:
    t0 = time.monotonic()
    r = app.test_client().post("/predict", json={"tasks": [{"id": 1, "data": {"image": url}}], "project": "5.1",
                                                 "label_config": config})
    return time.monotonic() - t0, r.json


def case_slow_images(tmp: Path) -> dict:
    from tests.doubles.images import jpeg_bytes
    from tests.doubles.providers import KnownGrounder, KnownVLM
    from tests.doubles.servers import FileServer, held
    os.environ["PREDICT_CONCURRENCY"] = "4"
    files, image = FileServer(), jpeg_bytes()
    files.files["/data/upload/5/ok.jpg"] = image

    files.files["/data/upload/5/slow.jpg"] = held(image, lambda: time.sleep(15))
    app, config = _autolabel_client(tmp, files.url, KnownVLM(0.9), KnownGrounder({"stop sign": [(.1, .1, .5, .5)]}))
    slow_requests = [threading.Thread(target=_predict, args=(app, config, "/data/upload/5/slow.jpg"))
                     for _ in range(4)]
    for t in slow_requests:
        t.start()
    time.sleep(1.0)  # the four slow downloads are under way
    seconds, body = _predict(app, config, "/data/upload/5/ok.jpg")
    for t in slow_requests:
        t.join()
    files.close()
    return {"ordinary_predict_seconds": round(seconds, 2), "boxes": len(body["results"][0]["result"])}


def case_hung_vlm(tmp: Path) -> dict:
    from pipeline.providers.openai_vlm import OpenAIVLM
    from tests.doubles.images import jpeg_bytes
    from tests.doubles.providers import KnownGrounder
    from tests.doubles.servers import FileServer, SilentServer
    os.environ["PREDICT_DEADLINE"] = "15"
    files, silent = FileServer(), SilentServer()
    files.files["/data/upload/5/ok.jpg"] = jpeg_bytes()
    vlm = OpenAIVLM(silent.url, "m", timeout=10, retries=3)
    app, config = _autolabel_client(tmp, files.url, vlm, KnownGrounder({}))
    seconds, body = _predict(app, config, "/data/upload/5/ok.jpg")
    silent.close()
    files.close()
    return {"predict_seconds": round(seconds, 1), "error": (body.get("errors") or [{}])[0].get("reason", "")[:200]}


def case_webhook(tmp: Path) -> dict:
    from backends.base import init_app
    from backends.identify import model as idmodel
    from pipeline.references import service as idservice
    from tests.doubles.images import card
    from tests.doubles.label_studio import webhook
    from tests.doubles.providers import HashEmbedder
    from tests.doubles.regions import ls_rect
    image = card(1)
    svc = idservice.IdentifyService(model_dir=tmp / "models", embedder=HashEmbedder(delay=3.0),
                                  image_fetcher=lambda task: image, client_factory=lambda: None)
    idservice.set_service(svc)
    ann = {"id": 11, "result": [ls_rect([0, 0, 96, 136], 96, 136, "Dark Magician", "r")]}
    body = webhook("ANNOTATION_CREATED", 3, {"id": 1, "data": {"image": "/data/upload/3/a.png"}}, ann)
    t0 = time.monotonic()
    r = init_app(idmodel.IdentifyModel).test_client().post("/webhook", json=body)
    return {"answer_seconds": round(time.monotonic() - t0, 3), "status": r.status_code,
            "result": r.json["result"].get("status")}


def case_backslash(tmp: Path) -> dict:
    from tests.doubles.images import jpeg_bytes
    from tests.doubles.providers import KnownGrounder, KnownVLM
    from tests.doubles.servers import Canary, FileServer
    from tests.doubles.urls import SPELLINGS
    files, canary = FileServer(), Canary()
    files.files["/data/upload/2/x.jpg"] = jpeg_bytes()
    ls = files.url.split("//", 1)[1]
    app, config = _autolabel_client(tmp, files.url, KnownVLM(0.9), KnownGrounder({"stop sign": [(.1, .1, .5, .5)]}))
    tasks = [{"id": i, "data": {"image": t.format(c=canary.netloc, cp=canary.port, ls=ls, a=ls)}}
             for i, t in enumerate(SPELLINGS)]
    body = app.test_client().post("/predict", json={"tasks": tasks, "project": "5.1", "label_config": config}).json
    time.sleep(0.5)
    files.close()
    canary.close()
    return {"urls": len(tasks), "refused": sum("refusing" in e["reason"] or "unsupported" in e["reason"]
                                               for e in body.get("errors") or []),
            "canary_connections": len(canary.received), "canary_tokens": len(canary.tokens())}


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> int:
    """Reset the peak RSS (VmHWM) to the current RSS; returns the current RSS (bytes)."""
    import gc
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def strip_png(width: int, height: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image
    y, x = np.mgrid[0:height, 0:width]
    a = np.stack([x % 256, (y * 9) % 256, (x // 7 + y) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def case_thin(tmp: Path, width: int, height: int, allowed: bool = False) -> dict:
    import resource

    import yaml

    from backends.autolabel.model import AutoLabelModel
    from backends.base import init_app
    from benchmarks.predict_overhead import owlv2_dir
    from pipeline.config import parse_project
    from pipeline.labelstudio import versions as project_version
    from pipeline.labelstudio.labeling_config import labeling_config
    from pipeline.predict import runner
    from tests.doubles.images import jpeg_bytes
    from tests.doubles.servers import FileServer
    project = {"project_name": "thin", "target_object": "stop sign", "label": "Stop Sign",
               "stages": {"filter": False, "ground": True, "verify": False},
               "providers": {"vlm": {"kind": "transformers", "model": "unused"},
                             "grounder": {"kind": "owlv2", "model": str(owlv2_dir("base")), "device": "cpu"}}}
    if allowed:
        project["budgets"] = {"max_aspect_ratio": None}
    files = FileServer()
    files.files["/data/upload/5/photo.jpg"] = jpeg_bytes((1600, 1200))
    files.files["/data/upload/5/strip.png"] = strip_png(width, height)
    (tmp / "p.yaml").write_text(yaml.safe_dump(project))
    os.environ.update(PROJECT_CONFIG=str(tmp / "p.yaml"), MODEL_DIR=str(tmp / "models"), LABEL_STUDIO_URL=files.url,
                      LABEL_STUDIO_API_KEY="0123456789abcdef0123456789abcdef01234567", PROJECTS_DIR=str(tmp),
                      PREDICT_CONCURRENCY="1", LF_ANSWER_CACHE="0")
    project_version.keep = lambda *args: None
    runner.pipelines.clear()
    app = init_app(AutoLabelModel)
    config = labeling_config(parse_project(project))

    def predict(name) -> tuple[float, dict]:
        t0 = time.monotonic()
        r = app.test_client().post("/predict", json={"tasks": [{"id": 1, "data": {"image": f"/data/upload/5/{name}"}}],
                                                     "project": "5.1", "label_config": config})
        return time.monotonic() - t0, r.json

    predict("photo.jpg")  # the model loaded and warm
    alone_seconds, _ = predict("photo.jpg")
    guard = _status("VmData") + int(float(os.getenv("LF_BENCH_GUARD_GB", "8")) * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (guard, guard))
    base = _reset_peak()
    seconds, body = predict("strip.png")
    growth = _status("VmHWM") - base
    error = (body.get("errors") or [{}])[0].get("reason", "")
    thread = threading.Thread(target=predict, args=("strip.png",))  # holds the only model slot first
    thread.start()
    time.sleep(0.5)
    ordinary_seconds, ordinary = predict("photo.jpg")
    thread.join()
    files.close()
    return {"strip": f"{width}x{height} PNG", "peak_rss_growth_mb": round(growth / 2**20), "seconds": round(seconds, 1),
            "answered": bool(body["results"] and body["results"][0]), "error": error[:150],
            "ordinary_predict_alone_seconds": round(alone_seconds, 1),
            "ordinary_predict_behind_it_seconds": round(ordinary_seconds, 1),
            "ordinary_answered": bool(ordinary["results"] and ordinary["results"][0])}


def case_big_image(tmp: Path, fmt: str) -> dict:
    from pipeline.config import Budgets
    from pipeline.images import open_photo
    path = tmp / f"big.{fmt.lower()}"
    subprocess.run([sys.executable, "-c", "import sys; from benchmarks.hostile_input import big_image; "
                                          "big_image(*sys.argv[1:])", str(path), fmt], cwd=REPO, check=True)
    data = path.read_bytes()
    base = _reset_peak()
    t0 = time.monotonic()
    try:
        photo = open_photo(data, Budgets().decode_pixels)
        working, error = "x".join(map(str, photo.pixels.size)), ""
    except Exception as e:  # noqa: BLE001 - a refusal is an outcome
        working, error = "", f"{type(e).__name__}: {e}"
    seconds = time.monotonic() - t0
    return {"image": f"10240x7712 {fmt} (RGBA), {len(data) / 1e6:.0f} MB", "working": working,
            "peak_rss_growth_mb": round((_status("VmHWM") - base) / 2**20), "seconds": round(seconds, 2),
            "error": error[:150]}


def big_image(path: str, fmt: str, width: int = 10240, height: int = 7712) -> None:
    """A photo-sized (79 MP) RGBA image at ``path``: gradients and sparse noise (~11-15 MB as PNG or WebP)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a = np.empty((height, width, 4), np.uint8)
    for c in range(3):
        a[..., c] = ((x * (c + 1) + y * (3 - c)) / 4 % 256).astype(np.uint8)
    a[..., 3] = 255
    a[::7, ::5, :3] = rng.integers(0, 256, a[::7, ::5, :3].shape, dtype=np.uint8)
    Image.fromarray(a, "RGBA").save(path, fmt, **({"quality": 80, "method": 0} if fmt == "WEBP" else {}))


def run_case(name: str) -> dict:
    import tempfile
    with tempfile.TemporaryDirectory(prefix="lf-hostile-") as tmp:
        if name == "endless":
            return case_endless()
        if name == "drip":
            return case_drip()
        if name.startswith("thin-"):
            size = name.split("-")[1]
            return case_thin(Path(tmp), *map(int, size.split("x")), allowed=name.endswith("-allowed"))
        if name in ("big-png", "big-webp"):
            return case_big_image(Path(tmp), name.split("-")[1].upper())
        fn = {"slow-images": case_slow_images, "hung-vlm": case_hung_vlm, "webhook": case_webhook,
              "backslash": case_backslash}[name]
        return fn(Path(tmp))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--code", help="checkout whose backends/pipeline to measure (default: this one)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)), flush=True)
        return
    path = os.pathsep.join([p for p in (args.code, str(REPO)) if p])
    for name in args.only.split(","):
        out = subprocess.run([sys.executable, __file__, "--case", name], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": path, "LOG_LEVEL": "ERROR"})
        lines = out.stdout.strip().splitlines()
        print(f"{name:12s} {lines[-1] if lines else 'failed: ' + out.stderr.strip()[-300:]}", flush=True)


if __name__ == "__main__":
    main()
