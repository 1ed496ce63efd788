"""pipeline/providers/hub.py: a model that is not on this machine fails at once, naming the model and how to get
it; one already in the Hugging Face cache loads with no network. The "hub" here is always a loopback server."""
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from pipeline.providers import hub
from pipeline.providers.hub import ModelUnavailable, locate
from pipeline.providers.sam import SamSegmenter
from tests import REPO


class Hub:
    """A loopback stand-in for the hub: answers every request with ``status`` (and ``headers``, e.g. the hub's
    X-Error-Code) and records its request line."""

    def __init__(self, status: str = "503 Service Unavailable"):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.status, self.headers = status, ""
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(conn.recv(65536).split(b"\r\n")[0].decode())
                conn.sendall(f"HTTP/1.1 {self.status}\r\n{self.headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
                             .encode())

    def asked_for(self, model: str) -> list[str]:
        return [r for r in self.requests if f"/{model}/" in r]

    def close(self):
        self.sock.close()


@pytest.fixture
def online_hub(monkeypatch):
    """huggingface_hub online, its endpoint a loopback Hub (status set per test)."""
    from huggingface_hub import constants
    stand_in = Hub()
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", stand_in.url)
    yield stand_in
    stand_in.close()


def test_a_local_directory_is_loaded_from_where_it_is(tmp_path):
    assert locate(str(tmp_path), "segmenter") == str(tmp_path)


@pytest.mark.parametrize("name", ["nowhere/at/all", "./nowhere", "/nowhere/sam"])
def test_a_missing_directory_fails_naming_it_and_how_to_get_a_model(name):
    with pytest.raises(ModelUnavailable) as e:
        locate(name, "segmenter")
    msg = str(e.value)
    assert f"segmenter model {name!r}: no such directory" in msg
    assert "label-factory up --models tiny" in msg and "local directory" in msg


def test_a_file_is_not_a_model_directory(tmp_path):
    (tmp_path / "sam.pt").write_bytes(b"x")
    with pytest.raises(ModelUnavailable, match="is a file"):
        locate(str(tmp_path / "sam.pt"), "segmenter")


def test_offline_and_not_cached_fails_at_once_without_asking_the_hub(online_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after huggingface_hub was imported: still honoured
    with pytest.raises(ModelUnavailable) as e:
        locate("facebook/sam-vit-base", "segmenter")
    msg = str(e.value)
    assert "segmenter model 'facebook/sam-vit-base' is not on this machine" in msg
    assert "HF_HUB_OFFLINE is set" in msg and "hf download facebook/sam-vit-base" in msg
    assert "label-factory up --models tiny" in msg
    assert online_hub.requests == []


def test_an_unreachable_hub_is_asked_once(online_hub):
    with pytest.raises(ModelUnavailable) as e:
        locate("facebook/sam-vit-base", "segmenter")
    msg = str(e.value)
    assert f"asking the hub at {online_hub.url} for it failed" in msg and "503" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "label-factory up --models tiny" in msg
    assert online_hub.asked_for("facebook/sam-vit-base") == ["HEAD /facebook/sam-vit-base/resolve/main/config.json "
                                                             "HTTP/1.1"]


def test_a_model_the_hub_does_not_have(online_hub):
    online_hub.status, online_hub.headers = "404 Not Found", "X-Error-Code: RepoNotFound\r\n"
    with pytest.raises(ModelUnavailable, match="has no model 'nobody/nothing'"):
        locate("nobody/nothing", "grounder")


def test_a_model_the_hub_has_is_left_to_the_loader_to_download(online_hub):
    online_hub.status = "200 OK"
    assert locate("facebook/sam-vit-base", "segmenter") == "facebook/sam-vit-base"


def test_a_cached_hub_model_loads_from_the_cache_with_no_network(tiny_sam_dir, tmp_path, online_hub, monkeypatch):
    """The snapshot in the HF cache is what loads; the hub (answering 503) is never asked."""
    from huggingface_hub import constants
    cache = tmp_path / "hf-cache"
    repo = cache / "models--tiny--sam"
    commit = "0" * 40
    shutil.copytree(tiny_sam_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert locate("tiny/sam", "segmenter") == str(repo / "snapshots" / commit)
    seg = SamSegmenter("tiny/sam", device="cpu")
    assert seg.describe()["model"] == "tiny/sam" and online_hub.requests == []


def test_a_model_that_is_not_here_fails_the_load_at_once_against_an_unreachable_hub():
    """The registry's load of a hub id that is not cached, the hub down, HF_HUB_OFFLINE unset (a fresh process:
    huggingface_hub reads its settings at import). transformers alone asks the hub ~45 times with back-off
    (minutes); here the hub is asked once and the error says which model and how to get it."""
    stand_in = Hub()
    code = ("from pipeline import deadline\n"
            "from pipeline.config import SegmenterProvider\n"
            "from pipeline.providers import registry\n"
            "with deadline.within(60, 'PREDICT_DEADLINE'):\n"
            "    try:\n"
            "        registry.get_segmenter(SegmenterProvider(model='facebook/sam-vit-base', device='cpu'))\n"
            "    except Exception as e:\n"
            "        print(type(e).__name__, e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=stand_in.url, PYTHONPATH=str(REPO))
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=100)
    finally:
        stand_in.close()
    assert out.stdout.startswith("ModelUnavailable segmenter model 'facebook/sam-vit-base' is not on this machine"), \
        out.stdout + out.stderr[-2000:]
    assert "label-factory up --models tiny" in out.stdout and "HF_HUB_OFFLINE" in out.stdout
    assert len(stand_in.asked_for("facebook/sam-vit-base")) == 1, stand_in.requests


def test_hub_module_says_offline_from_either_variable(monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert not hub.offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub.offline()
