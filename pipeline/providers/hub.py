"""Where a model's files are, found before anything loads: a model that is not on this machine fails at once.

``locate(model, what)`` gives the transformers providers and Falcon what to hand their loader:

* a local directory: that directory;
* a Hugging Face hub id already in the HF cache: its snapshot directory, so it loads with no network
  (a newer revision comes with ``hf download``);
* a hub id that is not cached: the id itself, when the hub (``HF_ENDPOINT``) answers one quick request
  for it; the loader then downloads it the normal way.

Anything else raises ``ModelUnavailable`` at once, naming the model and how to get it. Left to the loader,
a hub id that is not cached meets transformers' retry loop against an unreachable hub: minutes per
request. With ``HF_HUB_OFFLINE`` set the hub is never asked.

Not here: how long a load may take (``pipeline.providers.registry`` bounds that by the request's deadline)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from pipeline.providers.base import ProviderError
from pipeline.settings import Models

PROBE_SECONDS = 5.0  # the one request that asks the hub whether it has a model (no retries)
TINY_HINT = ("run `label-factory up --models tiny` to see the whole flow with tiny random-weight models "
             "built on this machine (their boxes mean nothing)")


class ModelUnavailable(ProviderError):
    """A model cannot be loaded here (or not within the request's time); the message names it and says how
    to get it. A request that needs it fails as a whole: no task of it can be answered."""

    def __init__(self, problem: str, how: str = ""):
        super().__init__(f"{problem}; {how}" if how else problem)
        self.problem = problem  # what is wrong, without the ways to get the model


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set now or was when huggingface_hub was imported."""
    from huggingface_hub import constants
    return constants.is_offline_mode() or Models.read().offline


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "~", ".")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def cached_snapshot(model: str) -> Optional[Path]:
    """The HF cache's snapshot directory of hub id ``model`` (one that holds its config.json), or None."""
    from huggingface_hub import try_to_load_from_cache
    try:
        found = try_to_load_from_cache(model, "config.json")
    except ValueError:  # HFValidationError: not a hub id
        return None
    return Path(found).parent if isinstance(found, str) else None


def how_to_get(model: str) -> str:
    from huggingface_hub import constants
    return (f"download it with `hf download {model}` where the hub is reachable (into the Hugging Face cache, "
            f"here {constants.HF_HUB_CACHE}), point the project YAML's model (or its LF_*_MODEL variable) at a "
            f"local directory holding it, or {TINY_HINT}")


def _hub_refusal(model: str) -> Optional[str]:
    """None when the hub has ``model``; else why it cannot give it (one request, PROBE_SECONDS at most)."""
    from huggingface_hub import constants, get_hf_file_metadata
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError
    endpoint = constants.ENDPOINT.rstrip("/")
    try:
        get_hf_file_metadata(f"{endpoint}/{model}/resolve/main/config.json", timeout=PROBE_SECONDS,
                             retry_on_errors=False)
    except GatedRepoError:
        return f"the hub at {endpoint} gates it: accept its licence there and set HF_TOKEN"
    except RepositoryNotFoundError:
        return f"the hub at {endpoint} has no model {model!r} (or it is private: set HF_TOKEN)"
    except EntryNotFoundError:
        return None  # the repository is there; the loader knows which files it needs
    except Exception as e:  # noqa: BLE001 - connection refused, DNS, timeout, TLS, 5xx: the hub cannot give it
        return (f"asking the hub at {endpoint} for it failed ({type(e).__name__}: {str(e)[:200]}; "
                "HF_HUB_OFFLINE=1 stops asking it)")
    return None


def locate(model: str, what: str) -> str:
    """What to load ``model`` from (see the module docstring); ``what`` names it in errors ("segmenter")."""
    model = str(model)
    local = Path(model).expanduser()
    if local.is_dir():
        return str(local)
    if local.exists():
        raise ModelUnavailable(f"{what} model {model!r} is a file; a model directory (config.json and weights) "
                               f"or a hub id is needed")
    if _looks_like_path(model):
        raise ModelUnavailable(f"{what} model {model!r}: no such directory on this machine", how_to_get(model))
    snapshot = cached_snapshot(model)
    if snapshot is not None:
        return str(snapshot)
    if offline():
        why = "HF_HUB_OFFLINE is set, so the hub is not asked (unset it to download from there)"
    else:
        why = _hub_refusal(model)
        if why is None:
            return model
    raise ModelUnavailable(f"{what} model {model!r} is not on this machine (neither a local directory nor in the "
                           f"Hugging Face cache) and {why}", how_to_get(model))
