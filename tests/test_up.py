"""`label-factory up --models tiny`: the whole local stack comes up, pre-annotates, and stops cleanly."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from pipeline.stack.labelstudio import label_studio_bin
from pipeline.stack.processes import free_port, port_is_free

pytestmark = pytest.mark.slow


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


def test_up_tiny_smoke(tmp_path):
    if label_studio_bin() is None:
        pytest.skip("Label Studio is not installed (scripts/setup.sh)")
    root = tmp_path / "stack"
    ls_port, be_port = free_port(), free_port()
    cmd = [str(Path(sys.executable).parent / "label-factory"), "up", "--models", "tiny", "--root", str(root),
           "--tiny-cache", str(tmp_path / "tiny"), "--port", str(ls_port), "--backend-port", str(be_port),
           "--timeout", "400"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Ctrl-C stops everything"):
                break
        text = "".join(lines)
        assert "label-factory is up: 4/5" not in text  # every sample task must be pre-annotated
        assert "label-factory is up: 5/5 tasks pre-annotated" in text, text[-3000:]
        assert f"http://127.0.0.1:{ls_port}/projects/" in text

        admin = json.loads((root / "label-studio" / "data" / "label-factory-admin.json").read_text())
        headers = {"Authorization": f"Token {admin['token']}"}
        base = f"http://127.0.0.1:{ls_port}"
        projects = requests.get(f"{base}/api/projects", headers=headers, timeout=30).json()["results"]
        assert [p["title"] for p in projects] == ["stop-signs"]
        pid = projects[0]["id"]
        preds = requests.get(f"{base}/api/predictions", params={"project": pid}, headers=headers, timeout=30).json()
        assert len({p["task"] for p in preds}) == 5
        for p in preds:
            assert p["model_version"].startswith("stop-signs-")
            for r in p["result"]:
                assert r["type"] == "rectanglelabels" and r["value"]["rectanglelabels"] == ["Stop Sign"]
        assert requests.get(f"http://127.0.0.1:{be_port}/health", timeout=10).json()["status"] == "UP"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rest, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
    assert proc.returncode == 0, rest[-2000:]
    assert "stopped." in rest
    time.sleep(1)
    assert port_is_free(ls_port) and port_is_free(be_port)
    assert _pids_mentioning(str(root)) == []  # no stray Label Studio / gunicorn processes
