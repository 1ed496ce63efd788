"""WSGI entry point: ``app`` for gunicorn, ``python -m backends._wsgi`` to run gunicorn with the env settings.

MODEL_CLASS picks the model (``module:Class``, default ``backends.autolabel.model:AutoLabelModel``);
MODEL_DIR is where the per-project cache lives; LOG_LEVEL sets the log level (pipeline/settings.py declares
them; the contract in backends/base is handed those values)."""
from __future__ import annotations

import importlib
import sys

from backends.base import settings as contract_settings
from pipeline import settings
from pipeline.logs import setup_logging


def model_class(spec: str | None = None):
    spec = spec or settings.Server.read().model_class
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"MODEL_CLASS={spec!r}: expected 'package.module:ClassName'")
    return getattr(importlib.import_module(module), name)


# what the server reads: a bad value among them stops it at start, naming the variable
SERVED = (settings.Server, settings.Paths, settings.LabelStudio, settings.Predict, settings.Images, settings.Models,
          settings.AnswerCache, settings.Identify, settings.Training)


def create_app():
    from backends.base import init_app
    settings.check(SERVED)
    setup_logging(settings.Server.read().log_level)
    contract_settings.use(settings.ContractValues())  # also for a model class that is not label-factory's
    settings.Paths.read().model_dir.mkdir(parents=True, exist_ok=True)
    return init_app(model_class())


app = create_app()


def main() -> None:
    """Run gunicorn with backends.gunicorn_conf (the same settings as the documented command)."""
    from gunicorn.app.wsgiapp import run
    sys.argv = ["gunicorn", "-c", "python:backends.gunicorn_conf", "backends._wsgi:app", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
