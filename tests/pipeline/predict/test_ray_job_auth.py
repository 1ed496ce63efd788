"""`predict --ray ADDRESS` against a Ray cluster with token authentication on (Ray 2.60 turns it on for a
head that finds ~/.ray/auth_token, and the compose file's Ray profile sets it): the driver sends the token
it has (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), also when Ray was imported before, and
without one it is told what to set instead of Ray's connection error. A real `ray start --head` on
127.0.0.1, its own process group, stopped at the end; drivers run in subprocesses with their own HOME."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipeline.predict import ray_job
from pipeline.stack.processes import Service, free_port
from tests import REPO

TOKEN = "lf-test-ray-token-7f3a9c1e5b"
# every Ray process on 127.0.0.1, no usage report leaving the machine
RAY_ENV = {ray_job.LOCAL_ONLY_ENV: "0", "RAY_USAGE_STATS_ENABLED": "0"}

DRIVER = """
import json, sys
if sys.argv[2] == "imported":
    import ray  # noqa: F401 - a driver that imported Ray before connecting
from pipeline.predict import ray_job
try:
    ray_job.connect(sys.argv[1])
except ray_job.batch.JobError as e:
    print(json.dumps({"error": str(e)}))
else:
    import ray
    print(json.dumps({"cpus": ray.cluster_resources().get("CPU"), "gcs": ray.get_runtime_context().gcs_address}))
"""


@pytest.fixture(scope="module")
def token_cluster():
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.skip("the ray command is not installed (the ray extra)")
    # short: Ray's socket paths under --temp-dir must stay below the unix socket limit
    tmp = Path(tempfile.mkdtemp(prefix="lfray-"))
    port = free_port()
    env = {**os.environ, **RAY_ENV, "HOME": str(tmp), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    head = Service("Ray head", [str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                                "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={tmp / 'r'}", "--block"],
                   env, tmp / "head.log")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.proc.poll() is None, head.log_tail()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, head.log_tail()
                time.sleep(0.5)
        time.sleep(3)  # the raylet registers after the GCS listens
        yield f"127.0.0.1:{port}", tmp
    finally:
        head.stop(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def _driver(address: str, home: Path, env: dict, imported: bool = False) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    out = subprocess.run([sys.executable, "-c", DRIVER, address, "imported" if imported else "-"],
                         env={**clean, **RAY_ENV, "HOME": str(home), "PYTHONPATH": str(REPO), **env},
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("imported", [False, True])
def test_the_token_in_the_environment_is_sent(token_cluster, imported):
    address, tmp = token_cluster
    got = _driver(address, tmp / f"home-env-{imported}", {"RAY_AUTH_TOKEN": TOKEN}, imported=imported)
    assert got["cpus"] == 1.0 and got["gcs"].startswith("127.0.0.1:"), got


@pytest.mark.slow
def test_the_token_file_in_home_is_sent(token_cluster):
    address, tmp = token_cluster
    home = tmp / "home-file"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(TOKEN)
    assert _driver(address, home, {})["cpus"] == 1.0


@pytest.mark.slow
def test_without_the_token_the_driver_is_told_what_to_set(token_cluster):
    address, tmp = token_cluster
    got = _driver(address, tmp / "home-none", {})
    assert "uses token authentication" in got["error"] and "RAY_AUTH_TOKEN" in got["error"], got
    assert TOKEN not in got["error"]


def test_token_sources_in_ray_order(tmp_path):
    assert not ray_job.ray_token_available({}, home=tmp_path)
    assert ray_job.ray_token_available({"RAY_AUTH_TOKEN": "t"}, home=tmp_path)
    (tmp_path / "tok").write_text("t\n")
    assert ray_job.ray_token_available({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "tok")}, home=tmp_path)
    assert not ray_job.ray_token_available({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}, home=tmp_path)
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t")
    assert ray_job.ray_token_available({}, home=tmp_path)
