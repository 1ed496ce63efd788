"""The backend under a real gunicorn (gthread): /health and /setup stay answerable while /predict
is saturated, extra /predict get 503 + Retry-After, and a new or respawned worker says "loading"
while its models load."""
from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from pipeline.stack.processes import Service, free_port
from tests import REPO

pytestmark = pytest.mark.slow

AUTH = ("lf-backend", "s3cret")
THREADS = 4  # -> 2 /predict at once, 2 threads kept for /health, /setup, /webhook, /metrics
SETUP = {"project": "1.1", "schema": '<View><Text name="t" value="$t"/></View>'}


def _until(check, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def gunicorn(tmp_path):
    gates = tmp_path / "gates"
    gates.mkdir()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PORT": str(port), "HOST": "127.0.0.1", "WORKERS": "1",
           "THREADS": str(THREADS), "MODEL_CLASS": "tests.doubles.gated_model:GatedModel",
           "MODEL_DIR": str(tmp_path / "model-dir"), "GATE_DIR": str(gates), "BASIC_AUTH_USER": AUTH[0],
           "BASIC_AUTH_PASS": AUTH[1], "LOG_LEVEL": "INFO"}
    env.pop("PREDICT_MAX_REQUESTS", None)
    svc = Service("ML backend", [sys.executable, "-m", "gunicorn", "-c", "python:backends.gunicorn_conf",
                                 "backends._wsgi:app"], env, tmp_path / "backend.log", cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        svc.wait_http(f"{url}/health", 60, auth=AUTH)
        yield url, gates, svc
    finally:
        svc.stop()


def _get(url, path, timeout=10.0):
    return requests.get(url + path, auth=AUTH, timeout=timeout)


def test_health_and_setup_stay_free_while_predict_is_saturated(gunicorn):
    url, gates, svc = gunicorn
    # a new worker answers at once, and says it is still loading
    assert _get(url, "/health").json() == {"status": "loading", "model_class": "GatedModel"}
    (gates / "warm").touch()
    _until(lambda: _get(url, "/health").json()["status"] == "UP", what="warm-up")

    body = {"tasks": [{"id": 1, "data": {}}], "project": "1.1"}
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(requests.post, f"{url}/predict", json=body, auth=AUTH, timeout=90) for _ in range(8)]
        try:
            _until(lambda: len(list(gates.glob("started-*"))) == 2, what="two predicts admitted")
            # the other six are turned away at once, with a hint when to come back
            _until(lambda: sum(f.done() for f in futures) == 6, what="six refusals")
            refused = [f.result() for f in futures if f.done()]
            assert all(r.status_code == 503 and r.headers["Retry-After"] == "5" for r in refused)
            assert refused[0].json()["status"] == 503 and "busy" in refused[0].json()["detail"]
            # while both admitted predicts are still blocked, /health, /setup and /metrics answer
            for _ in range(5):
                t0 = time.perf_counter()
                r = _get(url, "/health", timeout=10)
                assert r.status_code == 200 and r.json()["status"] == "UP"
                assert time.perf_counter() - t0 < 5  # generous: it used to wait for a free thread
            assert requests.post(f"{url}/setup", json=SETUP, auth=AUTH, timeout=10).status_code == 200
            predict = _get(url, "/metrics").json()["worker"]["predict"]
            assert predict["in_flight"] == 2 and predict["limit"] == THREADS - 2 and predict["refused_busy"] == 6
            assert sum(f.done() for f in futures) == 6  # the admitted two are still waiting
        finally:
            (gates / "release").touch()
        codes = sorted(f.result().status_code for f in futures)
    assert codes == [200, 200] + [503] * 6
    assert "Traceback" not in svc.log_tail(200)


def test_respawned_worker_says_loading_until_its_models_are_loaded(gunicorn):
    url, gates, svc = gunicorn
    (gates / "warm").touch()
    first = _until(lambda: (m := _get(url, "/metrics").json()["worker"])["loading"] is False and m, what="warm-up")
    (gates / "warm").unlink()
    os.kill(first["pid"], signal.SIGKILL)  # the master starts a new worker

    def new_worker_answers():
        try:
            return _get(url, "/metrics", timeout=2).json()["worker"]["pid"] != first["pid"]
        except requests.RequestException:
            return False

    _until(new_worker_answers, what="a respawned worker")
    assert _get(url, "/health").json() == {"status": "loading", "model_class": "GatedModel"}
    assert requests.post(f"{url}/setup", json=SETUP, auth=AUTH, timeout=10).status_code == 200
    (gates / "warm").touch()
    _until(lambda: _get(url, "/health").json()["status"] == "UP", what="warm-up of the new worker")
