"""Start a real ``mlx_vlm.server`` (OpenAI-compatible; MLX on Apple Silicon, or CPU via mlx[cpu]).

Used by the tests and benchmarks; on a Mac the same command serves the `openai` VLM provider:
``python -m mlx_vlm.server --model DIR_OR_HUB_ID --host 127.0.0.1 --port 8000 --top-logprobs-k 5``.
Without ``--top-logprobs-k`` the server answers ``top_logprobs: []`` and the provider falls back
to parsing the text answer."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from pipeline.settings import Models, process_environment
from pipeline.stack.processes import Service, free_port


def mlx_vlm_server_cmd(model, port: int, host: str = "127.0.0.1", top_logprobs_k: Optional[int] = 5) -> list[str]:
    cmd = [sys.executable, "-m", "mlx_vlm.server", "--model", str(model), "--host", host, "--port", str(port)]
    if top_logprobs_k:
        cmd += ["--top-logprobs-k", str(top_logprobs_k)]
    return cmd


def start_mlx_vlm_server(model, log_path: Path, port: Optional[int] = None, top_logprobs_k: Optional[int] = 5,
                         timeout: float = 120.0) -> Service:
    """A running server; ``.url`` is its OpenAI base URL (``http://127.0.0.1:PORT/v1``), ``.model``
    the name requests must use (the server loads any other name from the hub)."""
    port = free_port(port)
    env = {**process_environment(), "HF_HUB_OFFLINE": Models.read().hf_hub_offline or "1",
           "TOKENIZERS_PARALLELISM": "false"}
    svc = Service("mlx_vlm.server", mlx_vlm_server_cmd(model, port, top_logprobs_k=top_logprobs_k), env,
                  Path(log_path))
    try:
        svc.wait_http(f"http://127.0.0.1:{port}/health", timeout)
    except BaseException:
        svc.stop()
        raise
    svc.url, svc.model = f"http://127.0.0.1:{port}/v1", str(model)
    return svc
