"""Model classes the real-gunicorn tests serve (MODEL_CLASS=tests.doubles.gated_model:...).

Gates are files in GATE_DIR, so a test in another process decides when a worker is done loading
(``warm``) and when predictions finish (``release``); each admitted predict leaves a
``started-*`` file."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from backends.base import LabelStudioMLBase


def _wait_for(name: str, timeout: float = 120) -> None:
    path = Path(os.environ["GATE_DIR"]) / name
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


class GatedModel(LabelStudioMLBase):
    """Loads until GATE_DIR/warm exists; each predict blocks until GATE_DIR/release exists."""

    @classmethod
    def warm_up(cls) -> None:
        _wait_for("warm")

    def predict(self, tasks, context=None, **kwargs):
        (Path(os.environ["GATE_DIR"]) / f"started-{uuid.uuid4().hex}").touch()
        _wait_for("release", 60)
        return [{"result": [], "score": 1.0} for _ in tasks]
