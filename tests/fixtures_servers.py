"""Real model servers and tiny model dirs for tests (pytest plugin, loaded from conftest).

* ``tiny_qwen_mlx_dir``: tiny random Qwen2.5-VL (``pipeline.tiny.qwen.build``) copied into the flat config
  layout mlx-vlm 0.7.x reads (``mlx_copy``).
* ``tiny_qwen_yesno_mlx_dir``: the same model with a few planted weights so that the first answer token
  has known logits: "yes" = 2, "no" = 1, every other token 0.  So P(yes) from the top logprobs is
  ``KNOWN_P_YES`` = sigmoid(1) and the greedy text answer is "yes".
* ``mlx_vlm_server``: a real ``python -m mlx_vlm.server ... --top-logprobs-k 5`` subprocess serving the
  yes/no model; yields its base URL (``http://127.0.0.1:PORT/v1``, a ``str`` with ``.model`` = the model
  path the requests must name, and ``.log`` = the server log file).
* ``mlx_vlm_server_no_logprobs``: the same server started without ``--top-logprobs-k``: it answers
  ``top_logprobs: []``, which is what drives the provider's real text fallback.
* ``tiny_falcon_dir``: tiny Falcon Perception export dir (``pipeline.tiny.falcon.build``).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.stack.mlx_server import start_mlx_vlm_server
from pipeline.tiny.qwen import plant_yes_no


class ServerURL(str):
    """A server's base URL that also carries the model it serves, its log file and process."""
    model: str
    log: Path
    proc: subprocess.Popen


def start_server(model_dir, log_path: Path, top_logprobs_k: int | None = 5) -> ServerURL:
    svc = start_mlx_vlm_server(model_dir, log_path, top_logprobs_k=top_logprobs_k, timeout=90)
    url = ServerURL(svc.url)
    url.model, url.log, url.proc, url.service = svc.model, svc.log_path, svc.proc, svc
    return url


def warm_up(url: ServerURL) -> None:
    """First request compiles / loads the vision path (~4 s); do it once, outside the tests' timings."""
    from PIL import Image

    from pipeline.providers.openai_vlm import OpenAIVLM
    OpenAIVLM(url, url.model, timeout=120, retries=0).generate_answer(Image.new("RGB", (64, 64)), "Hi?", 1)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_qwen_mlx_dir(model_dir) -> Path:
    from pipeline.tiny.qwen import build, mlx_copy
    out = model_dir / "qwen25vl-mlx"
    if not (out / "config.json").exists():
        src = build(model_dir / "qwen25vl-hf-for-mlx")
        mlx_copy(src, out)
    return out


@pytest.fixture(scope="session")
def tiny_qwen_yesno_mlx_dir(tiny_qwen_mlx_dir, model_dir) -> Path:
    out = model_dir / "qwen25vl-mlx-yesno"
    if not (out / "config.json").exists():
        shutil.copytree(tiny_qwen_mlx_dir, out, dirs_exist_ok=True)
        plant_yes_no(out)
    return out


def _server_fixture(model_dir, tmp_path_factory, top_logprobs_k):
    url = start_server(model_dir, tmp_path_factory.mktemp("mlx_vlm_server") / "server.log", top_logprobs_k)
    try:
        warm_up(url)
        yield url
    finally:
        url.service.stop()


@pytest.fixture(scope="session")
def mlx_vlm_server(tiny_qwen_yesno_mlx_dir, tmp_path_factory):
    yield from _server_fixture(tiny_qwen_yesno_mlx_dir, tmp_path_factory, top_logprobs_k=5)


@pytest.fixture(scope="session")
def mlx_vlm_server_no_logprobs(tiny_qwen_yesno_mlx_dir, tmp_path_factory):
    yield from _server_fixture(tiny_qwen_yesno_mlx_dir, tmp_path_factory, top_logprobs_k=None)


@pytest.fixture(scope="session")
def tiny_falcon_dir(model_dir) -> Path:
    from pipeline.tiny.falcon import build
    out = model_dir / "falcon-perception-tiny"
    if not (out / "model.safetensors").exists():
        build(out)
    return out


@pytest.fixture(scope="session")
def tiny_falcon_seg_dir(model_dir) -> Path:
    """The segmenting tiny Falcon (``do_segmentation``): one box and one mask per query."""
    from pipeline.tiny.falcon import build
    out = model_dir / "falcon-perception-tiny-seg"
    if not (out / "model.safetensors").exists():
        build(out, segmentation=True)
    return out
