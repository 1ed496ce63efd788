"""WSGI entry point: ``app`` for gunicorn, ``python -m backends._wsgi`` to run gunicorn with the env settings.

MODEL_CLASS picks the model (``module:Class``, default ``backends.autolabel.model:AutoLabelModel``);
MODEL_DIR is where the per-project cache lives; LOG_LEVEL sets the log level."""
from __future__ import annotations

import importlib
import logging
import os
import sys

DEFAULT_MODEL_CLASS = "backends.autolabel.model:AutoLabelModel"


def _configure_logging() -> None:
    level = os.getenv("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="[%(asctime)s] [%(levelname)s] [%(name)s] %(message)s")
    # the SDK logs every resolved URL at INFO (signed URLs included): keep it quieter
    logging.getLogger("label_studio_sdk").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def model_class(spec: str | None = None):
    spec = spec or os.getenv("MODEL_CLASS", DEFAULT_MODEL_CLASS)
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"MODEL_CLASS={spec!r}: expected 'package.module:ClassName'")
    return getattr(importlib.import_module(module), name)


def create_app():
    from backends.base import init_app
    _configure_logging()
    os.makedirs(os.getenv("MODEL_DIR", "."), exist_ok=True)
    return init_app(model_class())


app = create_app()


def main() -> None:
    """Run gunicorn with backends.gunicorn_conf (the same settings as the documented command)."""
    from gunicorn.app.wsgiapp import run
    sys.argv = ["gunicorn", "-c", "python:backends.gunicorn_conf", "backends._wsgi:app", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
