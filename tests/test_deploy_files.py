"""The deployment files are checked by their own tools (no Docker engine runs in CI)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tool(name):
    path = shutil.which(name) or (Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return str(path)


def test_compose_file_is_valid():
    out = subprocess.run([_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert set(services) == {"label-studio", "ml-backend", "model-server"}
    env = services["ml-backend"]["environment"]
    assert env["LABEL_STUDIO_URL"] == "http://label-studio:8080"  # not localhost inside Docker
    for var in ("LABEL_STUDIO_API_KEY", "MODEL_DIR", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "WORKERS", "THREADS",
                "PORT"):
        assert var in env
    assert all("healthcheck" in s for s in services.values())


def test_dockerfile_lints_clean():
    out = subprocess.run([_tool("hadolint"), "Dockerfile"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
