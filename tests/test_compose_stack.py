"""docker-compose.yml started for real: the backend image built from the project's Dockerfile, a Label
Studio 1.23.2 image with the official one's paths (tests/deploy/label-studio.Dockerfile), both on a Debian
base made here (no image registry is reachable), and ``docker-compose -f docker-compose.yml -f
tests/deploy/compose.images.yml`` (an override that only names those images). Everything is driven from
the host through the ports compose publishes on 127.0.0.1; the models are tiny random-weight ones built
inside the backend container (pipeline/tiny, as ``up --models tiny`` does), in the model-dir volume.

Set LF_COMPOSE_KEEP_IMAGES=1 to keep the images (and reuse them next run); by default every container,
network, volume and image the test made is removed, and a dockerd it started is stopped."""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from pipeline.labelstudio.coords import xyxy_to_rect
from pipeline.stack.processes import free_port
from tests import REPO, docker_engine
from tests.doubles.images import sign_jpeg

# the first test builds the images: ~10 min from scratch on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]

KEEP = os.environ.get("LF_COMPOSE_KEEP_IMAGES") == "1"
IMAGES = {"base": "label-factory-test/bookworm:minbase", "wheels": "label-factory-test/wheels:torch-2.14.1",
          "backend": "label-factory-test/backend:dev", "label-studio": "label-factory-test/label-studio:1.23.2"}
TINY_DIR = "/data/models/tiny"
TINY_YAML = f"{TINY_DIR}/stop-signs-tiny.yaml"
PROJECT_TITLE = "stop-signs"  # the YAML's project_name: `predict` finds the project by it
# the tiny models of `up --models tiny` plus a tiny CLIP for identify, in the model-dir volume
BUILD_TINY = f"""
import yaml
from pathlib import Path
from pipeline.config import load_project
from pipeline.stack.models import tiny_project
from pipeline.tiny.clip import build_tiny_clip
out, src = Path({TINY_DIR!r}), Path("/app/projects/stop-signs.yaml")
path = tiny_project(load_project(src, environ={{}}), src, out, Path({TINY_YAML!r}))
cfg, ck = build_tiny_clip(out / "clip")
data = yaml.safe_load(path.read_text())
data["providers"]["identify"] = {{"model": str(cfg), "pretrained": str(ck), "min_cosine": 0.0, "min_margin": 0.0}}
data["stages"]["identify"] = True
path.write_text(yaml.safe_dump(data, sort_keys=False))
print(path)
"""


def _missing() -> list[str]:
    return docker_engine.missing_tools()


def _host_network() -> tuple[bool, str]:
    """(docker0 exists, the iptables rules without comments and packet counters, which restoring resets)."""
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30).stdout
    rules = [re.sub(r" \[\d+:\d+\]$", "", line) for line in saved.splitlines() if not line.startswith("#")]
    return docker_engine.BRIDGE.exists(), "\n".join(rules)


def test_a_dockerd_the_tests_start_leaves_the_host_network_as_it_was(tmp_path):
    """dockerd makes the docker0 bridge and its iptables chains (FORWARD's policy set to DROP among them) and leaves
    them when it stops. Runs before the stack's session engine (file order): two dockerds cannot share a data-root."""
    if not os.access(docker_engine.DOCKERD, os.X_OK) or os.geteuid() != 0 or not shutil.which("iptables-save"):
        pytest.skip("needs dockerd (docker.io), root and iptables")
    if subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
        pytest.skip("a dockerd is already running")
    before = _host_network()
    engine = docker_engine.Engine(tmp_path).start()
    try:
        assert docker_engine.BRIDGE.exists() and "DOCKER" in _host_network()[1]
    finally:
        engine.stop()
    assert _host_network() == before


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    missing = _missing()
    if missing:
        pytest.skip("compose stack test needs " + ", ".join(missing))
    eng = docker_engine.Engine(tmp_path_factory.mktemp("docker")).start()
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture(scope="session")
def images(engine, tmp_path_factory):
    """The four images; built unless LF_COMPOSE_KEEP_IMAGES=1 kept them from an earlier run. Build seconds
    are printed in the test's output (docs/guides/deploy.md quotes them)."""
    work = tmp_path_factory.mktemp("images")
    made = []
    try:
        for name, make in (
                ("base", lambda tag: docker_engine.debootstrap_image(engine, tag, work)),
                ("wheels", lambda tag: docker_engine.wheels_image(engine, tag, work, "torch==2.14.1",
                                                                  "torchvision==0.29.1")),
                ("backend", lambda tag: engine.build(tag, REPO, BASE_IMAGE=IMAGES["base"], WHEELS=IMAGES["wheels"])),
                ("label-studio", lambda tag: engine.build(
                    tag, REPO / "tests/deploy", dockerfile=REPO / "tests/deploy/label-studio.Dockerfile",
                    BASE_IMAGE=IMAGES["base"]))):
            tag = IMAGES[name]
            if KEEP and engine.image_exists(tag):
                continue
            t0 = time.monotonic()
            make(tag)
            made.append(tag)
            print(f"\nimage {tag}: {time.monotonic() - t0:.0f} s")
        yield IMAGES
    finally:
        if not KEEP:
            engine.docker("image", "rm", "--force", *made, check=False)
            engine.docker("builder", "prune", "--force", check=False, timeout=600)


class Stack:
    """docker-compose with the test's project name, images, ports and secrets."""

    def __init__(self, engine: docker_engine.Engine, images: dict, files_dir: Path):
        self.engine = engine
        self.project = f"lfcompose{uuid.uuid4().hex[:8]}"
        self.ls_port, self.backend_port = free_port(), free_port()
        self.auth = ("lf-health", "p@ss w:rd " + secrets.token_hex(4))  # shell-unfriendly on purpose
        self.admin = ("admin@example.com", secrets.token_urlsafe(12))
        self.vars = {
            "COMPOSE_PROJECT_NAME": self.project,
            "LF_TEST_BACKEND_IMAGE": images["backend"], "LF_TEST_LABEL_STUDIO_IMAGE": images["label-studio"],
            "LABEL_STUDIO_PORT": str(self.ls_port), "BACKEND_PORT": str(self.backend_port),
            "RAY_DASHBOARD_PORT": str(free_port()), "RAY_CLIENT_PORT": str(free_port()),
            "LABEL_STUDIO_FILES": str(files_dir),
            "LABEL_STUDIO_USERNAME": self.admin[0], "LABEL_STUDIO_PASSWORD": self.admin[1],
            "BASIC_AUTH_USER": self.auth[0], "BASIC_AUTH_PASS": self.auth[1],
            "PROJECT_CONFIG": TINY_YAML, "LABEL_STUDIO_API_KEY": "",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
        }
        self.ls_url = f"http://127.0.0.1:{self.ls_port}"
        self.backend_url = f"http://127.0.0.1:{self.backend_port}"

    def compose(self, *args, check: bool = True, timeout: float = 900, input: str = None):
        cmd = [docker_engine.COMPOSE, "-f", "docker-compose.yml", "-f", "tests/deploy/compose.images.yml",
               "--profile", "ray", *args]
        out = subprocess.run(cmd, cwd=REPO, env=self.engine.env(**self.vars), capture_output=True, text=True,
                             timeout=timeout, input=input)
        if check and out.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed ({out.returncode}):\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}\n{self.logs()}")
        return out

    def exec(self, service: str, *cmd, input: str = None, timeout: float = 900) -> str:
        return self.compose("exec", "-T", service, *cmd, input=input, timeout=timeout).stdout

    def logs(self, tail: int = 60) -> str:
        out = subprocess.run([docker_engine.COMPOSE, "-f", "docker-compose.yml", "-f",
                              "tests/deploy/compose.images.yml", "--profile", "ray", "logs", "--no-color",
                              f"--tail={tail}"], cwd=REPO, env=self.engine.env(**self.vars), capture_output=True,
                             text=True, timeout=120)
        return out.stdout[-12000:]

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).stdout.strip()
        assert cid, f"no container for {service}"
        return cid

    def health(self, service: str) -> str:
        return self.engine.docker("inspect", "-f", "{{.State.Health.Status}}", self.container(service)).stdout.strip()

    def wait_healthy(self, *services: str, timeout: float = 600) -> None:
        """Until Docker reports each service healthy (an unhealthy one may still recover: Docker keeps checking)."""
        deadline = time.monotonic() + timeout
        for service in services:
            while (state := self.health(service)) != "healthy":
                assert time.monotonic() < deadline, f"{service} is {state} after {timeout:.0f} s:\n{self.logs()}"
                time.sleep(3)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False, timeout=600)


@pytest.fixture(scope="session")
def stack(engine, images, tmp_path_factory):
    s = Stack(engine, images, tmp_path_factory.mktemp("ls-files"))
    try:
        yield s
    finally:
        s.down()
        leftovers = engine.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={s.project}").stdout
        assert not leftovers.strip(), f"containers left behind: {leftovers}"


def _ls_session(stack: Stack) -> requests.Session:
    """A browser-like session of the admin compose created (log in with e-mail and password)."""
    s = requests.Session()
    s.get(f"{stack.ls_url}/user/login/", timeout=30)
    r = s.post(f"{stack.ls_url}/user/login/", data={"email": stack.admin[0], "password": stack.admin[1],
                                                    "csrfmiddlewaretoken": s.cookies["csrftoken"]},
               headers={"Referer": f"{stack.ls_url}/user/login/"}, timeout=30, allow_redirects=False)
    assert r.status_code == 302, f"login refused: {r.status_code}"
    return s


def _personal_access_token(stack: Stack) -> str:
    s = _ls_session(stack)
    r = s.post(f"{stack.ls_url}/api/token/", headers={"X-CSRFToken": s.cookies["csrftoken"],
                                                      "Referer": stack.ls_url}, timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()["token"]


class LS:
    """Label Studio's REST API as the host sees it, with a personal access token."""

    def __init__(self, url: str, pat: str):
        self.url, self.pat, self._access = url, pat, None

    def headers(self) -> dict:
        if self._access is None:
            r = requests.post(f"{self.url}/api/token/refresh/", json={"refresh": self.pat}, timeout=30)
            r.raise_for_status()
            self._access = r.json()["access"]
        return {"Authorization": f"Bearer {self._access}"}

    def call(self, method: str, path: str, expect=(200, 201), **kw):
        r = requests.request(method, f"{self.url}{path}", headers=self.headers(), timeout=300, **kw)
        if r.status_code == 401:  # the access token expired: refresh once
            self._access = None
            r = requests.request(method, f"{self.url}{path}", headers=self.headers(), timeout=300, **kw)
        assert r.status_code in expect, f"{method} {path}: {r.status_code} {r.text[:2000]}"
        return r.json() if r.content else None

    def predictions(self, project: int) -> list[dict]:
        return self.call("GET", "/api/predictions/", params={"project": project})

    def tasks(self, project: int) -> list[dict]:
        return sorted(self.call("GET", "/api/tasks/", params={"project": project, "page_size": 100})["tasks"],
                      key=lambda t: t["id"])


def _import_images(ls: LS, project: int, seeds) -> None:
    files = [(f"f{s}", (f"sign{s}.jpg", sign_jpeg(s), "image/jpeg")) for s in seeds]
    ls.call("POST", f"/api/projects/{project}/import", files=files)


def _state(ls: LS, project: int):
    """What Label Studio holds of the project: tasks with their annotations, and the predictions."""
    tasks = [(t["id"], t["data"]["image"], t.get("total_annotations"), t.get("total_predictions"))
             for t in ls.tasks(project)]
    preds = sorted((p["id"], p["task"], p["model_version"], json.dumps(p["result"], sort_keys=True))
                   for p in ls.predictions(project))
    annotations = sorted((a["id"], json.dumps(a["result"], sort_keys=True)) for t in ls.tasks(project)
                         for a in ls.call("GET", f"/api/tasks/{t['id']}/annotations/"))
    return tasks, preds, annotations


def _wait(what: str, check, stack: Stack, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}\n{stack.logs()}"
        time.sleep(2)
    return value


def _index_digest(stack: Stack, project: int) -> str:
    out = stack.exec("ml-backend", "sh", "-c", f"sha256sum /data/models/identify/project-{project}/index.lfidx "
                     "2>/dev/null || true")
    return out.split()[0] if out.strip() else ""


def _backend_version(stack: Stack, project: int, config: str) -> str:
    """The model_version the backend answers /setup with (identify's index version is part of it)."""
    r = requests.post(f"{stack.backend_url}/setup", auth=stack.auth, timeout=60,
                      json={"project": f"{project}.{int(time.time())}", "schema": config})
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def test_compose_stack(stack: Stack):
    t0 = time.monotonic()
    # -- the tiny models, in the model-dir volume, before the backend starts with them ---------------
    stack.compose("run", "--rm", "--no-deps", "-T", "-e", "HF_HUB_OFFLINE=1", "ml-backend", "python", "-",
                  input=BUILD_TINY)
    # -- Label Studio first: its admin makes the personal access token the backend is given ------------
    stack.compose("up", "-d", "label-studio")
    stack.wait_healthy("label-studio")
    pat = _personal_access_token(stack)
    stack.vars["LABEL_STUDIO_API_KEY"] = pat
    stack.compose("up", "-d", "ml-backend")
    stack.wait_healthy("ml-backend")  # its healthcheck passes only with the basic auth credentials
    assert stack.health("label-studio") == "healthy"
    assert requests.get(f"{stack.backend_url}/health", timeout=10).status_code == 401
    assert requests.get(f"{stack.backend_url}/health", auth=stack.auth, timeout=10).status_code == 200
    print(f"\nstack up and healthy: {time.monotonic() - t0:.0f} s")

    # -- a project with `label-factory config`'s labeling config -------------------------------------
    config = stack.exec("ml-backend", "label-factory", "config", "--project", TINY_YAML)
    assert "<RectangleLabels" in config
    ls = LS(stack.ls_url, pat)
    project = ls.call("POST", "/api/projects/", json={"title": PROJECT_TITLE, "label_config": config})["id"]
    _import_images(ls, project, range(3))
    tasks = ls.tasks(project)
    assert len(tasks) == 3

    # -- the backend connected at its service name, with basic auth ----------------------------------
    auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": stack.auth[0], "basic_auth_pass": stack.auth[1]}
    ml = ls.call("POST", "/api/ml/", json={"project": project, "url": "http://ml-backend:9090",
                                           "title": "label-factory", **auth})
    ml = ls.call("GET", f"/api/ml/{ml['id']}")
    assert ml["state"] == "CO", (ml["state"], ml.get("error_message"))
    # Label Studio creates the ML backend's webhook only when it is connected, and refuses a dotless host in a
    # webhook URL: connected at the compose alias ml-backend.internal its annotations reach fit()
    ls.call("DELETE", f"/api/ml/{ml['id']}", expect=(204,))
    ml = ls.call("POST", "/api/ml/", json={"project": project, "url": "http://ml-backend.internal:9090",
                                           "title": "label-factory", **auth})
    assert ls.call("GET", f"/api/ml/{ml['id']}")["state"] == "CO"
    webhooks = ls.call("GET", "/api/webhooks/", params={"project": project})
    assert [w["url"] for w in webhooks] == ["http://ml-backend.internal:9090/webhook"]
    # the webhook is sent without the ML backend's basic auth: it gets the header as a person adds it in
    # Label Studio's webhook settings (docs/guides/deploy.md), or /webhook answers 401
    basic = base64.b64encode(":".join(stack.auth).encode()).decode()
    ls.call("PATCH", f"/api/webhooks/{webhooks[0]['id']}/", json={"headers": {"Authorization": f"Basic {basic}"}})
    version = _backend_version(stack, project, config)  # the project's model_version is the title

    # -- Retrieve Predictions, the Data Manager action ----------------------------------------------
    ls.call("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
            json={"selectedItems": {"all": True, "excluded": []}})
    preds = ls.predictions(project)
    assert {p["task"] for p in preds} == {t["id"] for t in tasks}, preds
    assert {p["model_version"] for p in preds} == {version}
    boxes = [r for p in preds for r in p["result"] if r["type"] == "rectanglelabels"]
    assert boxes and all(r["value"]["rectanglelabels"] == ["Stop Sign"] for r in boxes)

    # -- an annotation: Label Studio's webhook reaches fit(), the index lands in the model-dir volume --
    assert _index_digest(stack, project) == ""
    w, h = 96, 64
    rect = {"id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "original_width": w, "original_height": h,
            "value": {**xyxy_to_rect((10, 8, 60, 50), w, h), "rectanglelabels": ["Stop Sign"]}}
    ls.call("POST", f"/api/tasks/{tasks[0]['id']}/annotations/", json={"result": [rect]})
    digest = _wait("the annotation's webhook did not reach fit()", lambda: _index_digest(stack, project), stack)
    fitted = _wait("the backend's model_version did not follow the index",
                   lambda: (v := _backend_version(stack, project, config)) != version and v, stack, timeout=60)

    # -- restart: the index and the model_version are kept -------------------------------------------
    stack.compose("restart", "ml-backend")
    stack.wait_healthy("ml-backend")
    assert _index_digest(stack, project) == digest
    assert _backend_version(stack, project, config) == fitted

    # -- down and up again: nothing is lost (Label Studio's database, the index, the backend's version) --
    before = _state(ls, project)
    stack.compose("down", "--timeout", "20")
    stack.compose("up", "-d", "ml-backend")
    stack.wait_healthy("label-studio", "ml-backend")
    ls = LS(stack.ls_url, pat)  # the same personal access token still works
    assert _state(ls, project) == before
    assert _index_digest(stack, project) == digest
    assert _backend_version(stack, project, config) == fitted
    print(f"predict, fit, restart, down/up: {time.monotonic() - t0:.0f} s")

    # -- the Ray profile: `predict --ray` on a head and a worker, Ray's token authentication on --------
    _import_images(ls, project, range(3, 5))
    new = {t["id"] for t in ls.tasks(project)} - {t["id"] for t in tasks}
    stack.compose("up", "-d", "ray-head", "ray-worker")
    stack.wait_healthy("ray-head", "ray-worker")
    nodes = stack.exec("ray-head", "python", "-c",
                       "import ray; ray.init(address='auto', log_to_driver=False); "
                       "print(sum(n['Alive'] for n in ray.nodes()))")
    assert nodes.strip().splitlines()[-1] == "2", nodes
    out = stack.compose("exec", "-T", "-e", "HF_HUB_OFFLINE=1", "ray-head", "label-factory", "predict", "--ray",
                        "auto", "--project", TINY_YAML, timeout=900, check=False)
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    assert "actor(s)" in out.stderr, out.stderr[-3000:]
    by_task = {}
    for p in ls.predictions(project):
        by_task.setdefault(p["task"], []).append(p["model_version"])
    assert new <= set(by_task), (new, by_task)  # the two new tasks got predictions from the Ray job
    print(f"Ray profile: {time.monotonic() - t0:.0f} s")


def test_the_image_runs_as_a_user_without_build_tools(images, engine):
    """Image hygiene checked on the image the stack runs: not root, no compiler, no pip cache, no apt lists,
    no wheel files."""
    image = images["backend"]
    out = engine.docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                        "id -u; for t in gcc cc g++ make git; do command -v $t; done; "
                        "ls /var/lib/apt/lists | grep -v -e '^partial$' -e '^lock$' | head -3; "
                        "ls -d /root/.cache/pip ~/.cache/pip 2>/dev/null; find / -xdev -name '*.whl' "
                        "-not -path '/proc/*' 2>/dev/null | head -3").stdout.split()
    assert out == ["1000"], out
    config = json.loads(engine.docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "1000" and config["Healthcheck"]["Test"][0] == "CMD"
