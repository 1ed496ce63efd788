"""`label-factory up`: the whole local stack comes up, pre-annotates, says what to do next, and stops cleanly."""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from pipeline.stack.ls_server import label_studio_bin
from pipeline.stack.processes import free_port, port_is_free
from tests import REPO


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _pids_with_env(entry: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if entry.encode() in (d / "environ").read_bytes().split(b"\0"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def test_backend_that_never_answers_is_stopped(tmp_path, monkeypatch):
    """gunicorn up, its app never importable in time: `up` gives up on it and leaves no process behind."""
    from pipeline.stack.up import start_backend
    monkeypatch.setenv("MODEL_CLASS", "tests.doubles.hanging_model:Model")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    ls = SimpleNamespace(url="http://127.0.0.1:9", token="unused")
    with pytest.raises(RuntimeError, match="did not answer"):
        start_backend(tmp_path, tmp_path / "p.yaml", ls, None, timeout=6)
    time.sleep(0.5)
    assert _pids_with_env(f"MODEL_DIR={tmp_path / 'model-dir'}") == []


def test_ready_text_says_where_how_and_what_next(tmp_path):
    from pipeline.stack.ls_server import Admin
    from pipeline.stack.up import ready_text
    ls = SimpleNamespace(url="http://127.0.0.1:8080", admin=Admin("a@b.c", "pw", "tok123"), token="tok123",
                         data_dir=tmp_path)
    backend = SimpleNamespace(url="http://127.0.0.1:9090", log_path=tmp_path / "backend.log")
    text = ready_text(ls, "127.0.0.1", 3, 5, 5, "v1", backend, tmp_path / "p.yaml", tab=7)
    for needle in ("5/5 tasks pre-annotated", "http://127.0.0.1:8080/projects/3/data", "a@b.c / pw",
                   "API token      tok123", "model_version  v1", "next:\n  - open the URL",
                   "review tab     http://127.0.0.1:8080/projects/3/data?tab=7", "Order by -> Prediction score",
                   "label-factory predict --project", "Auto-Detect rectangle",
                   "Ctrl-C stops"):
        assert needle in text, text
    masks = ready_text(ls, "127.0.0.1", 3, 5, 5, "v1", backend, tmp_path / "p.yaml", masks="brush")
    assert "its masks and scores" in masks and "click tool" in masks and "review tab" not in masks
    remote = ready_text(ls, "0.0.0.0", 3, 5, 5, "v1", backend, tmp_path / "p.yaml")
    assert f"http://{socket.gethostname()}:8080/projects/3/data" in remote and "every interface" in remote


def test_edited_project_yaml_reaches_the_tiny_backend(tmp_path):
    """With tiny models the backend reads a generated copy: `up` rewrites it when the YAML is edited, so the
    backend's model_version changes and Retrieve Predictions predicts again."""
    import yaml

    from pipeline.config import load_project
    source, out, watch = _tiny_watch(tmp_path)
    assert watch.check() is None
    data = yaml.safe_load(source.read_text())
    data["target_object"] = "yield sign"
    source.write_text(yaml.safe_dump(data))
    line = watch.check()
    assert "model_version" in line and "Retrieve Predictions" in line, line
    assert load_project(out, environ={}).target_object == "yield sign"  # the backend's copy follows
    assert load_project(out, environ={}).thresholds.verify == 0.0  # still the tiny models' open gates
    source.write_text("target_object: [")
    assert "cannot be used" in watch.check() and load_project(out, environ={}).target_object == "yield sign"


def _tiny_watch(tmp_path):
    from pipeline.config import load_project
    from pipeline.stack.models import tiny_project
    from pipeline.stack.up import ProjectWatch
    source = tmp_path / "p.yaml"
    source.write_text((REPO / "projects" / "stop-signs.yaml").read_text())
    cache, out = tmp_path / "cache", tmp_path / "tiny.yaml"
    for name in ("qwen2_5_vl", "owlv2", "sam"):  # stand-ins for built tiny models: the copy only names them
        (cache / name).mkdir(parents=True)
        (cache / name / "config.json").write_text("{}")
    tiny_project(load_project(source, environ={}), source, cache, out)
    return source, out, ProjectWatch(source, out, cache)


def test_thresholds_edited_while_up_runs_reach_the_tiny_backend(tmp_path):
    """The tiny copy opens the gates for random scores, but a threshold the person edits in the YAML is used as
    written from then on (a new model_version, and `up` says which), the gates not edited staying open."""
    import yaml

    from pipeline.config import load_project
    source, out, watch = _tiny_watch(tmp_path)
    opened = load_project(out, environ={}).thresholds
    assert (opened.filter, opened.grounding, opened.verify, opened.max_boxes) == (0.0, 0.0, 0.0, 3)
    data = yaml.safe_load(source.read_text())
    data["thresholds"].update({"verify": 0.7, "max_boxes": 1})
    source.write_text(yaml.safe_dump(data))
    line = watch.check()
    assert "model_version stop-signs-" in line and " -> " in line, line
    assert "max_boxes, verify now as the YAML says" in line, line
    th = load_project(out, environ={}).thresholds
    assert (th.verify, th.max_boxes) == (0.7, 1) and (th.filter, th.grounding) == (0.0, 0.0)
    assert "as the YAML says: max_boxes, verify" in out.read_text().splitlines()[0]
    data["thresholds"]["verify"] = 0.5  # back to the value `up` started with: still the person's, not 0
    source.write_text(yaml.safe_dump(data))
    assert "now as the YAML says" not in watch.check()
    assert load_project(out, environ={}).thresholds.verify == 0.5


def test_tiny_copy_segments_with_a_tiny_sam(tmp_path):
    """Brush and polygon projects on `up`'s tiny backend get masks: the copy's segmenter is the tiny SAM."""
    from pipeline.config import load_project
    _, out, _ = _tiny_watch(tmp_path)
    seg = load_project(out, environ={}).providers.segmenter
    assert (seg.kind, seg.model, seg.device) == ("sam", str(tmp_path / "cache" / "sam"), "cpu")


class Output:
    """The lines a process prints, read in the background."""

    def __init__(self, proc):
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: list[str] = []
        self.ended = threading.Event()  # the process closed its output (it exited)

        def read():
            for line in proc.stdout:
                self.lines.put(line)
            self.ended.set()
        threading.Thread(target=read, daemon=True).start()

    def until(self, predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.ended.is_set() and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError("not printed in time, or the process ended; output:\n" + "".join(self.seen)[-3000:])


def _assert_uncertain_tab(base: str, headers: dict, project_id: int, text: str) -> None:
    """`up` made the Data Manager tab of unlabeled tasks, least certain first, and printed its link."""
    from pipeline.labelstudio import lsapi
    views = requests.get(f"{base}/api/dm/views", params={"project": project_id}, headers=headers, timeout=30).json()
    (tab,) = [v for v in views if v["data"].get("title") == lsapi.UNCERTAIN_TAB]
    assert tab["data"]["ordering"] == ["tasks:predictions_score"] and tab["data"]["filters"] == lsapi.UNLABELED_SCORED
    assert f"review tab     {base}/projects/{project_id}/data?tab={tab['id']}" in text, text


def _start_up(tmp_path, project: Path, *extra: str):
    host = "127.0.0.1"
    ls_port, be_port = free_port(None, host), free_port(None, host)
    cmd = [str(Path(sys.executable).parent / "label-factory"), "up", "--models", "tiny", "--project", str(project),
           "--root", str(tmp_path / "stack"), "--tiny-cache", str(tmp_path / "tiny"), "--port", str(ls_port),
           "--backend-port", str(be_port), "--timeout", "400", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return proc, Output(proc), f"http://{host}:{ls_port}"


def _stop_up(proc, out) -> str:
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    time.sleep(1)
    while not out.lines.empty():
        out.seen.append(out.lines.get())
    return "".join(out.seen)


@pytest.mark.slow
def test_ctrl_c_while_starting_stops_at_once(tmp_path):
    """Ctrl-C while Label Studio is still starting: `up` stops it and exits (130) at once, rather than carrying on
    starting everything and leaving Label Studio behind when it is killed."""
    if label_studio_bin() is None:
        pytest.skip("Label Studio is not installed (scripts/setup.sh)")
    project = tmp_path / "stop-signs.yaml"
    project.write_text((REPO / "projects" / "stop-signs.yaml").read_text())
    proc, out, _ = _start_up(tmp_path, project)
    root = str(tmp_path / "stack")
    try:
        out.until(lambda line: line.startswith("starting Label Studio"), 300)
        deadline = time.monotonic() + 30
        while not _pids_mentioning(f"--data-dir {root}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _pids_mentioning(f"--data-dir {root}"), "Label Studio never started"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _pids_mentioning(root):  # what a killed `up` left behind
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
    rest = _stop_up(proc, out)
    assert proc.returncode == 130 and "stopped." in rest, rest[-2000:]
    assert "label-factory is up" not in rest
    assert _pids_mentioning(root) == []


@pytest.mark.slow
def test_up_masks_brush_project_gets_masks(tmp_path):
    """`up --models tiny --masks brush`: a sample brush project (with the click / box / similar tools) whose tasks
    each get a prediction of brush masks from the tiny SAM, scored, with the review tab; stopped cleanly."""
    if label_studio_bin() is None:
        pytest.skip("Label Studio is not installed (scripts/setup.sh)")
    project = tmp_path / "stop-signs.yaml"
    project.write_text((REPO / "projects" / "stop-signs.yaml").read_text())
    proc, out, base = _start_up(tmp_path, project, "--masks", "brush")
    try:
        out.until(lambda line: line.startswith("Ctrl-C stops everything"), 600)
        text = "".join(out.seen)
        assert "label-factory is up: 5/5 tasks pre-annotated" in text, text[-3000:]
        assert "its masks and scores" in text and "click tool" in text
        admin = json.loads((tmp_path / "stack" / "label-studio" / "data" / "label-factory-admin.json").read_text())
        headers = {"Authorization": f"Token {admin['token']}"}
        (info,) = requests.get(f"{base}/api/projects", headers=headers, timeout=30).json()["results"]
        assert info["title"] == "stop-signs-brush"
        config = info["label_config"]
        assert '<BrushLabels name="label"' in config and 'name="click"' in config and 'find_similar="true"' in config
        preds = requests.get(f"{base}/api/predictions", params={"project": info["id"]}, headers=headers,
                             timeout=30).json()
        assert len({p["task"] for p in preds}) == 5 and len(preds) == 5
        regions = [r for p in preds for r in p["result"]]
        assert regions, preds  # masks, not empty predictions
        for r in regions:
            assert r["type"] == "brushlabels" and r["value"]["brushlabels"] == ["Stop Sign"]
            assert r["value"]["format"] == "rle" and len(r["value"]["rle"]) > 0 and 0 <= r["score"] <= 1
        _assert_uncertain_tab(base, headers, info["id"], text)
    finally:
        rest = _stop_up(proc, out)
    assert proc.returncode == 0 and "stopped." in rest, rest[-2000:]
    assert _pids_mentioning(str(tmp_path / "stack")) == []


@pytest.mark.slow
def test_up_tiny_smoke(tmp_path):
    """`up --models tiny --host 127.0.0.2`: both services bound there, every sample pre-annotated, the project's
    model_version equal to the predictions' (score column), a readable console, an edited YAML re-predicted by
    Retrieve Predictions, and nothing left running after Ctrl-C."""
    if label_studio_bin() is None:
        pytest.skip("Label Studio is not installed (scripts/setup.sh)")
    host = "127.0.0.2"  # a loopback alias: the bind address is really used
    root = tmp_path / "stack"
    project = tmp_path / "stop-signs.yaml"
    project.write_text((REPO / "projects" / "stop-signs.yaml").read_text())
    ls_port, be_port = free_port(None, host), free_port(None, host)
    cmd = [str(Path(sys.executable).parent / "label-factory"), "up", "--models", "tiny", "--project", str(project),
           "--root", str(root), "--tiny-cache", str(tmp_path / "tiny"), "--host", host, "--port", str(ls_port),
           "--backend-port", str(be_port), "--timeout", "400"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "LF_VLM_KIND": "openai"})  # tiny wins
    out = Output(proc)
    try:
        out.until(lambda line: line.startswith("Ctrl-C stops everything"), 600)
        text = "".join(out.seen)
        assert "label-factory is up: 5/5 tasks pre-annotated" in text, text[-3000:]
        base = f"http://{host}:{ls_port}"
        assert f"{base}/projects/" in text
        admin = json.loads((root / "label-studio" / "data" / "label-factory-admin.json").read_text())
        assert f"API token      {admin['token']}" in text and f"{admin['email']} / {admin['password']}" in text
        assert "\nnext:\n  - open the URL" in text
        for noise in ("HTTP Request:", "it/s]", "Writing model shards", "Loading weights"):  # logs, progress bars
            assert noise not in text, text

        headers = {"Authorization": f"Token {admin['token']}"}
        for port in (ls_port, be_port):  # bound to the --host address only
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        projects = requests.get(f"{base}/api/projects", headers=headers, timeout=30).json()["results"]
        assert [p["title"] for p in projects] == ["stop-signs"]
        pid = projects[0]["id"]
        preds = requests.get(f"{base}/api/predictions", params={"project": pid}, headers=headers, timeout=30).json()
        assert len({p["task"] for p in preds}) == 5
        version = preds[0]["model_version"]
        assert version.startswith("stop-signs-") and version.endswith("-transformers+owlv2")
        for p in preds:
            assert p["model_version"] == version
            for r in p["result"]:
                assert r["type"] == "rectanglelabels" and r["value"]["rectanglelabels"] == ["Stop Sign"]
        project_info = requests.get(f"{base}/api/projects/{pid}", headers=headers, timeout=30).json()
        assert project_info["model_version"] == version  # what the Prediction score column scores
        assert f"model_version  {version}" in text
        tasks = requests.get(f"{base}/api/tasks", params={"project": pid, "fields": "all"}, headers=headers,
                             timeout=30).json()["tasks"]
        assert all(t["predictions_score"] is not None for t in tasks)  # the Data Manager's column
        _assert_uncertain_tab(base, headers, pid, text)
        assert requests.get(f"http://{host}:{be_port}/health", timeout=10).json()["status"] == "UP"

        # the person edits the YAML while `up` runs: a new model_version, and Retrieve Predictions predicts again
        project.write_text(project.read_text().replace("target_object: stop sign", "target_object: stop sign board"))
        line = out.until(lambda line: "model_version stop-signs-" in line, 30)
        new_version = line.rsplit(" -> ", 1)[1].strip()
        requests.post(f"{base}/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": pid},
                      json={"selectedItems": {"all": True, "excluded": []}}, headers=headers, timeout=300)
        preds = requests.get(f"{base}/api/predictions", params={"project": pid}, headers=headers, timeout=30).json()
        assert {t["id"]: 2 for t in tasks} == {t["id"]: sum(p["task"] == t["id"] for p in preds) for t in tasks}
        assert {p["model_version"] for p in preds} == {version, new_version}

        ls_log = (root / "label-studio" / "label-studio.log").read_text()
        assert "Invalid page" not in ls_log and "/storage-data/uploaded/" not in ls_log
    finally:
        rest = _stop_up(proc, out)
    assert proc.returncode == 0, rest[-2000:]
    assert "stopped." in rest
    assert port_is_free(ls_port, host) and port_is_free(be_port, host)
    assert _pids_mentioning(str(root)) == []  # no stray Label Studio / gunicorn processes


@pytest.mark.parametrize("shell, threads", [({}, "32"), ({"THREADS": "16", "WORKERS": "2"}, "16")])
def test_backend_gunicorn_settings_default_like_docker_and_follow_the_shell(tmp_path, monkeypatch, shell, threads):
    """`up` starts gunicorn with the image's defaults (1 worker x 32 threads: 30 /predict in progress, 2 threads kept
    for /health and /setup), and a THREADS / WORKERS the person exported wins."""
    from pipeline.stack import up
    for k in ("THREADS", "WORKERS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in shell.items():
        monkeypatch.setenv(k, v)
    seen = {}

    class Recorder:
        def __init__(self, name, cmd, env, log_path, cwd=None):
            seen.update(env)

        def wait_http(self, url, timeout):
            return None

    monkeypatch.setattr(up, "Service", Recorder)
    ls = SimpleNamespace(url="http://127.0.0.1:9", token="unused")
    up.start_backend(tmp_path, tmp_path / "p.yaml", ls, None, timeout=1)
    assert seen["THREADS"] == threads and seen["WORKERS"] == shell.get("WORKERS", "1")
