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

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

KNOWN_YES_LOGIT, KNOWN_NO_LOGIT = 2.0, 1.0
KNOWN_P_YES = 1.0 / (1.0 + math.exp(KNOWN_NO_LOGIT - KNOWN_YES_LOGIT))  # 0.7311


class ServerURL(str):
    """A server's base URL that also carries the model it serves and its log file."""
    model: str
    log: Path
    proc: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_get(url: str, timeout: float = 2.0) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def mlx_vlm_server_cmd(model_dir, port: int, top_logprobs_k: int | None = 5) -> list[str]:
    cmd = [sys.executable, "-m", "mlx_vlm.server", "--model", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port)]
    if top_logprobs_k:
        cmd += ["--top-logprobs-k", str(top_logprobs_k)]
    return cmd


def start_mlx_vlm_server(model_dir, log_path: Path, top_logprobs_k: int | None = 5,
                         startup_timeout: float = 90.0) -> ServerURL:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = open(log_path, "wb")
    proc = subprocess.Popen(mlx_vlm_server_cmd(model_dir, port, top_logprobs_k), stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    deadline = time.monotonic() + startup_timeout
    while not _http_get(f"http://127.0.0.1:{port}/health"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            tail = Path(log_path).read_text(errors="replace")[-3000:]
            pytest.fail(f"mlx_vlm.server did not come up on port {port} (exit {proc.returncode}):\n{tail}")
        time.sleep(0.2)
    url = ServerURL(f"http://127.0.0.1:{port}/v1")
    url.model, url.log, url.proc = str(model_dir), Path(log_path), proc
    return url


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def warm_up(url: ServerURL) -> None:
    """First request compiles / loads the vision path (~4 s); do it once, outside the tests' timings."""
    from PIL import Image

    from pipeline.providers.openai_vlm import OpenAIVLM
    OpenAIVLM(url, url.model, timeout=120, retries=0).generate_answer(Image.new("RGB", (64, 64)), "Hi?", 1)


def plant_yes_no(model_dir: Path) -> None:
    """Rewrite the tiny Qwen weights so the first answer token has logits yes=2, no=1, others 0.

    Every layer's MLP and attention values are zeroed except layer 0's value bias, which the output
    projection maps to a large constant along hidden dim 0; after the final RMSNorm the last hidden
    state is 8 * e0 whatever the image and prompt, and lm_head reads it off."""
    import json

    import numpy as np
    from safetensors.numpy import load_file, save_file

    path = model_dir / "model.safetensors"
    w = load_file(str(path))
    vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    hidden = w["model.norm.weight"].shape[0]
    layers = sorted({k.split(".")[2] for k in w if k.startswith("model.layers.")}, key=int)
    for i in layers:
        p = f"model.layers.{i}."
        w[p + "mlp.down_proj.weight"] = np.zeros_like(w[p + "mlp.down_proj.weight"])
        w[p + "self_attn.v_proj.weight"] = np.zeros_like(w[p + "self_attn.v_proj.weight"])
        w[p + "self_attn.v_proj.bias"] = np.full_like(w[p + "self_attn.v_proj.bias"], 1.0 if i == "0" else 0.0)
        o = np.zeros_like(w[p + "self_attn.o_proj.weight"])
        if i == "0":
            o[0, :] = 10.0
        w[p + "self_attn.o_proj.weight"] = o
    w["model.norm.weight"] = np.ones_like(w["model.norm.weight"])
    head = np.zeros_like(w["lm_head.weight"])
    scale = math.sqrt(hidden)  # RMSNorm output along e0
    head[vocab["yes"], 0] = KNOWN_YES_LOGIT / scale
    head[vocab["no"], 0] = KNOWN_NO_LOGIT / scale
    w["lm_head.weight"] = head
    save_file(w, str(path), metadata={"format": "pt"})


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
    url = start_mlx_vlm_server(model_dir, tmp_path_factory.mktemp("mlx_vlm_server") / "server.log",
                               top_logprobs_k=top_logprobs_k)
    try:
        warm_up(url)
        yield url
    finally:
        stop_server(url.proc)


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
