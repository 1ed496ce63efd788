"""The environment the label-studio-ml contract reads, in one place: MODEL_DIR and CACHE_TYPE (the per-project
cache), BASIC_AUTH_USER / BASIC_AUTH_PASS, PREDICT_CONCURRENCY / PREDICT_SLOT_WAIT / PREDICT_MAX_REQUESTS
(/predict admission) and LABEL_STUDIO_URL (or _HOST) / LABEL_STUDIO_API_KEY (or _ACCESS_TOKEN) for an
upstream model's Label Studio client.

``current()`` is an object with one attribute per value (``NAMES``), each read when asked. An application
hands its own over with ``use(source)`` (an object with the same attributes); from then on nothing here
reads the environment. label-factory's servers hand ``pipeline.settings.ContractValues()``, so every value
they use comes from ``pipeline/settings.py``. Without one (an upstream ``model.py`` served on its own) the
variables are read here, with upstream's defaults. This is the one reader of the environment besides
``pipeline/settings.py``, on purpose: the contract imports no application code. A bad value is a
``ValueError`` naming the variable, raised where that value is used (never showing a secret)."""
from __future__ import annotations

import os
from typing import Mapping, Optional

NAMES = ("model_dir", "cache_type", "basic_auth_user", "basic_auth_pass", "predict_concurrency",
         "predict_slot_wait", "predict_max_requests", "label_studio_url", "label_studio_api_key")
DEFAULT_SLOTS = 4
DEFAULT_SLOT_WAIT = 5.0


class FromEnvironment:
    """The contract's values, each read from ``environ`` (default: this process's environment) when asked."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None):
        self._environ = environ

    def _get(self, *names: str) -> str:
        env = os.environ if self._environ is None else self._environ
        return next((env[n] for n in names if env.get(n)), "")

    def _number(self, name: str, cast, default, minimum):
        raw = self._get(name).strip()
        if not raw:
            return default
        try:
            value = cast(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r}: not {'an integer' if cast is int else 'a number'}") from None
        if value < minimum:
            raise ValueError(f"{name}={raw!r}: must be at least {minimum}")
        return value

    @property
    def model_dir(self) -> str:
        return self._get("MODEL_DIR") or "."

    @property
    def cache_type(self) -> str:
        return self._get("CACHE_TYPE") or "sqlite"

    @property
    def basic_auth_user(self) -> str:
        return self._get("BASIC_AUTH_USER")

    @property
    def basic_auth_pass(self) -> str:
        return self._get("BASIC_AUTH_PASS")

    @property
    def predict_concurrency(self) -> int:
        return self._number("PREDICT_CONCURRENCY", int, DEFAULT_SLOTS, 1)

    @property
    def predict_slot_wait(self) -> float:
        return self._number("PREDICT_SLOT_WAIT", float, DEFAULT_SLOT_WAIT, 0)

    @property
    def predict_max_requests(self) -> Optional[int]:
        return self._number("PREDICT_MAX_REQUESTS", int, None, 1)

    @property
    def label_studio_url(self) -> str:
        return self._get("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST").strip().rstrip("/")

    @property
    def label_studio_api_key(self) -> str:
        return self._get("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN")


_source = FromEnvironment()


def use(source) -> None:
    """Read the contract's values from ``source`` (an object with the attributes of ``NAMES``; None: from
    the environment again)."""
    global _source
    _source = source if source is not None else FromEnvironment()


def current():
    """Where the contract's values come from now: ``current().model_dir``, ... (each read when asked)."""
    return _source
