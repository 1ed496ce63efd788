"""The environment the label-studio-ml contract reads, in one place: MODEL_DIR and CACHE_TYPE (the per-project
cache), BASIC_AUTH_USER / BASIC_AUTH_PASS, PREDICT_CONCURRENCY / PREDICT_SLOT_WAIT / PREDICT_MAX_REQUESTS
(/predict admission) and LABEL_STUDIO_URL (or _HOST) / LABEL_STUDIO_API_KEY (or _ACCESS_TOKEN) for an
upstream model's Label Studio client.

An application hands its own settings over with ``use(values)`` (a function returning a mapping of
``ContractSettings``' fields); from then on nothing here reads the environment. label-factory's servers
hand ``pipeline.settings.contract_values``, so every value they use comes from ``pipeline/settings.py``.
Without one (an upstream ``model.py`` served on its own) the variables are read here, with upstream's
defaults. This is the one reader of the environment besides ``pipeline/settings.py``, on purpose: the
contract imports no application code. A bad value is a ``ValueError`` naming the variable (never the
value of a secret)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

DEFAULT_SLOTS = 4
DEFAULT_SLOT_WAIT = 5.0


@dataclass(frozen=True)
class ContractSettings:
    model_dir: str = "."
    cache_type: str = "sqlite"
    basic_auth_user: str = ""
    basic_auth_pass: str = field(default="", repr=False)
    predict_concurrency: int = DEFAULT_SLOTS
    predict_slot_wait: float = DEFAULT_SLOT_WAIT
    predict_max_requests: Optional[int] = None
    label_studio_url: str = ""
    label_studio_api_key: str = field(default="", repr=False)


def _number(environ: Mapping[str, str], name: str, cast, default, minimum):
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: not {'an integer' if cast is int else 'a number'}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def from_environment(environ: Optional[Mapping[str, str]] = None) -> dict:
    """The contract's values read from ``environ`` (default: this process's environment, now)."""
    env = os.environ if environ is None else environ
    return {"model_dir": env.get("MODEL_DIR") or ".", "cache_type": env.get("CACHE_TYPE") or "sqlite",
            "basic_auth_user": env.get("BASIC_AUTH_USER") or "", "basic_auth_pass": env.get("BASIC_AUTH_PASS") or "",
            "predict_concurrency": _number(env, "PREDICT_CONCURRENCY", int, DEFAULT_SLOTS, 1),
            "predict_slot_wait": _number(env, "PREDICT_SLOT_WAIT", float, DEFAULT_SLOT_WAIT, 0),
            "predict_max_requests": _number(env, "PREDICT_MAX_REQUESTS", int, None, 1),
            "label_studio_url": (env.get("LABEL_STUDIO_URL") or env.get("LABEL_STUDIO_HOST") or "").strip().rstrip("/"),
            "label_studio_api_key": env.get("LABEL_STUDIO_API_KEY") or env.get("LABEL_STUDIO_ACCESS_TOKEN") or ""}


_values: Callable[[], Mapping] = from_environment


def use(values: Optional[Callable[[], Mapping]]) -> None:
    """Take the contract's settings from ``values()`` (None: from the environment again)."""
    global _values
    _values = values or from_environment


def current() -> ContractSettings:
    """The contract's settings now (read at each call: tests change the environment between calls)."""
    return ContractSettings(**_values())
