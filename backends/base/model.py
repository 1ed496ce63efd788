"""``LabelStudioMLBase``: the label-studio-ml 2.x model class contract.

A model object is created per request with the project id and labeling config; state that
must outlive the request (model_version, label config, extra params) lives in the per-project
cache (``get``/``set``/``has``), heavy objects belong in module-level singletons. Classmethod
hooks the app calls without a request: ``warm_up`` (load weights when a worker starts) and
``metrics`` (added to /metrics). ``TAKES_MODEL_SLOTS``: whether ``predict`` holds the worker's
model slots itself (``backends.base.worker``) or the app holds one for all of it.
``predict_fn`` / ``update_fn`` register plain functions as ``predict`` / ``fit`` of the base
class itself."""
from __future__ import annotations

import collections
import contextlib
import contextvars
import json
import logging
import os
import threading
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

from label_studio_sdk import LabelStudio
from label_studio_sdk._extensions.label_studio_tools.core.label_config import parse_config
from label_studio_sdk._extensions.label_studio_tools.core.utils.io import get_local_path as _sdk_get_local_path
from label_studio_sdk.label_interface import LabelInterface
from semver import Version

from backends.base import credentials
from backends.base.cache import get_cache
from backends.base.errors import LabelConfigError
from backends.base.response import ModelResponse
from backends.base.utils import is_preload_needed, needs_download

log = logging.getLogger(__name__)

# Upstream label-studio-ml 2.x lists ANNOTATION_CREATED/UPDATED/DELETED and START_TRAINING. Label Studio
# 1.23 has no singular ANNOTATION_DELETED: a deletion sends ANNOTATIONS_DELETED (body
# {"annotations": [{"id": ...}], "project": {...}}), and imports send the bulk ANNOTATIONS_CREATED. The
# webhook it creates for a connected ML backend sends every action, so both reach /webhook -> fit().
TRAIN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                "ANNOTATIONS_DELETED", "START_TRAINING")
_OMITTED = object()  # preload_task_data(task) without a value: preload task["data"]

_predict_fn: Optional[Callable] = None
_update_fn: Optional[Callable] = None
# extra params /setup is validating: the model sees them before they are stored
_pending_extra_params: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("pending_extra_params",
                                                                                       default=None)


def predict_fn(f: Callable) -> Callable:
    """Register ``f(tasks, context, helper=<model>, **params)`` as ``LabelStudioMLBase.predict``."""
    global _predict_fn
    _predict_fn = f
    log.info("predict function %r registered", f.__name__)
    return f


def update_fn(f: Callable) -> Callable:
    """Register ``f(event, data, helper=<model>, **params)`` as ``LabelStudioMLBase.fit``."""
    global _update_fn
    _update_fn = f
    log.info("update function %r registered", f.__name__)
    return f


@contextlib.contextmanager
def extra_params_on_trial(extra_params: dict) -> Iterator[None]:
    """Models built inside see ``extra_params`` as theirs, before anything is stored (/setup
    builds the model with the new params and stores them only if that worked)."""
    token = _pending_extra_params.set(extra_params)
    try:
        yield
    finally:
        _pending_extra_params.reset(token)


_interfaces: "collections.OrderedDict[str, LabelInterface]" = collections.OrderedDict()
_interfaces_lock = threading.Lock()
INTERFACES_KEPT = 32  # labeling configs whose parsed LabelInterface is kept (one per project is typical)


def _interface(label_config: str) -> LabelInterface:
    """The parsed labeling config, parsed once per config text per process (a model object is built per
    request; the LabelInterface is only read)."""
    with _interfaces_lock:
        hit = _interfaces.get(label_config)
        if hit is not None:
            _interfaces.move_to_end(label_config)
            return hit
    parsed = LabelInterface(config=label_config)
    with _interfaces_lock:
        _interfaces[label_config] = parsed
        while len(_interfaces) > INTERFACES_KEPT:
            _interfaces.popitem(last=False)
    return parsed


class LabelStudioMLBase:
    INITIAL_MODEL_VERSION = "0.0.1"
    TRAIN_EVENTS = TRAIN_EVENTS
    # False: the app runs the whole predict() in one model slot (backends.base.worker). True: predict()
    # holds ``model_slot()`` itself around its model compute only, so its downloads take none.
    TAKES_MODEL_SLOTS = False
    _label_studio_client = None  # None: not built yet; False: could not be built (see the log)

    def __init__(self, project_id: Optional[str] = None, label_config: Optional[str] = None):
        self.project_id = str(project_id or "")
        self.label_interface: Optional[LabelInterface] = None
        if label_config:
            self.use_label_config(label_config)
        elif self.label_config:
            self.label_interface = _interface(self.label_config)
        if not self.model_version:
            self.set("model_version", self.INITIAL_MODEL_VERSION)
        self.setup()

    def setup(self):
        """Override: per-request set-up, e.g. ``self.set("model_version", ...)``. Must be fast
        (Label Studio gives /setup 3 s): load weights once per process, not here. Raise
        ``ExtraParamsError`` / ``LabelConfigError`` when the project's settings cannot work."""

    @classmethod
    def warm_up(cls) -> None:
        """Override: load weights when a worker starts (in a thread; /health says "loading" meanwhile)."""

    @classmethod
    def metrics(cls) -> dict:
        """Override: entries for /metrics (JSON, this worker process); must be fast and never raise."""
        return {}

    # -- labeling config --------------------------------------------------------------
    def use_label_config(self, label_config: str) -> None:
        try:
            self.label_interface = _interface(label_config)
        except Exception as e:  # the SDK raises its XML syntax errors, not ValueError
            raise LabelConfigError(f"the labeling config is not valid: {type(e).__name__}: {e}") from None
        if self.get("label_config") != label_config:
            self.set("label_config", label_config)
            self.set("parsed_label_config", json.dumps(parse_config(label_config)))

    @property
    def label_config(self) -> Optional[str]:
        return self.get("label_config")

    @property
    def parsed_label_config(self) -> dict:
        return json.loads(self.get("parsed_label_config") or "{}")

    def get_first_tag_occurence(self, control_type: Union[str, Tuple], object_type: Union[str, Tuple],
                                name_filter: Optional[Callable] = None,
                                to_name_filter: Optional[Callable] = None) -> Tuple[str, str, str]:
        """(from_name, to_name, value) of the first control of ``control_type`` on an object of ``object_type``."""
        if self.label_interface is None:
            raise ValueError("no labeling config: Label Studio did not send one and none is cached")
        return self.label_interface.get_first_tag_occurence(control_type=control_type, object_type=object_type,
                                                            name_filter=name_filter, to_name_filter=to_name_filter)

    def build_label_map(self, tag_name: str, names: List[str]) -> Dict[str, str]:
        """Model label -> config label: ``predicted_values`` aliases first, then the label's own name
        (exact, then case-insensitive). Names with no match are absent from the map."""
        from backends.base.labels import build_label_map
        return build_label_map(self.label_interface.get_control(tag_name), names)

    # -- per-project cache ------------------------------------------------------------
    def get(self, key: str) -> Optional[str]:
        return get_cache()[self.project_id, key]

    def set(self, key: str, value: str) -> None:
        get_cache()[self.project_id, key] = value

    def has(self, key: str) -> bool:
        return (self.project_id, key) in get_cache()

    def set_extra_params(self, extra_params) -> None:
        self.set("extra_params", json.dumps(extra_params))

    @property
    def extra_params(self) -> dict:
        pending = _pending_extra_params.get()
        if pending is not None:
            return pending
        raw = self.get("extra_params")
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        if isinstance(value, str):  # Label Studio stores extra params as a JSON string
            try:
                value = json.loads(value)
            except ValueError:
                return {}
        return value if isinstance(value, dict) else {}

    # -- versions ---------------------------------------------------------------------
    @property
    def model_version(self) -> Union[Version, str, None]:
        """A ``semver.Version`` when the stored version is one (``.bump_patch()`` etc.), else the string."""
        mv = self.get("model_version")
        if not mv:
            return None
        try:
            return Version.parse(mv)
        except ValueError:
            return mv

    def bump_model_version(self) -> Union[Version, str]:
        """Next minor version (``0.0.1`` -> ``0.1.0``); a version that is not semver gets ``.1`` appended."""
        mv = self.model_version or Version.parse(self.INITIAL_MODEL_VERSION)
        new = mv.bump_minor() if isinstance(mv, Version) else f"{mv}.1"
        self.set("model_version", str(new))
        return new

    # -- predict / train --------------------------------------------------------------
    def predict(self, tasks: List[Dict], context: Optional[Dict] = None,
                **kwargs) -> Union[List[Dict], ModelResponse, None]:
        """Override: predictions for ``tasks`` (one entry per task, in order)."""
        if _predict_fn is not None:
            return _predict_fn(tasks, context, helper=self, **kwargs)
        return None

    def process_event(self, event, data, job_id=None, additional_params=None):
        if event in self.TRAIN_EVENTS:
            return self.fit(event=event, data=data, job_id=job_id, **(additional_params or {}))

    def fit(self, event, data, **kwargs):
        """Override: update the model on an annotation event or START_TRAINING."""
        if _update_fn is not None:
            return _update_fn(event, data, helper=self, **kwargs)
        return None

    # -- data access --------------------------------------------------------------------
    def _get_label_studio_client(self):
        """The SDK client for LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY (shared by the process; with no key,
        as upstream, from the URL alone), or False when it cannot be built (logged once per model object,
        which then uses the key as is)."""
        if self._label_studio_client is None:
            try:
                self._label_studio_client = credentials.client(factory=LabelStudio, key_required=False)
            except Exception as e:  # noqa: BLE001 - credentials.client says why, never with the token
                log.warning("no Label Studio SDK client for %r: %s", credentials.label_studio_url(), e)
                self._label_studio_client = False
        return self._label_studio_client

    def get_label_studio_access_token(self) -> str:
        """Legacy token as is, or a current access token exchanged for the personal access token."""
        client = self._get_label_studio_client() if credentials.label_studio_api_key() else False
        if client:
            return credentials.client_token(client)
        return credentials.label_studio_api_key()

    def get_local_path(self, url, project_dir=None, ls_host=None, ls_access_token=None, task_id=None, *args,
                       **kwargs) -> str:
        """The file behind a task URL: downloaded (cached) by the SDK with the Label Studio token, or
        the path itself when it is a file on this machine."""
        if not needs_download(url) and os.path.isfile(url):
            return url
        if ls_access_token is None:
            ls_access_token = self.get_label_studio_access_token()
        hostname = ls_host or credentials.label_studio_url()
        return _sdk_get_local_path(url, *args, project_dir=project_dir, hostname=hostname,
                                   access_token=ls_access_token, task_id=task_id, **kwargs)

    def preload_task_data(self, task: Dict, value=_OMITTED, read_file: bool = True):
        """``value`` (default ``task['data']``) with each string that names a file (see
        ``utils.is_preload_needed``) replaced by the file's text (``read_file``) or local path.
        Dicts and lists are walked; other values (``None`` too) come back as they are."""
        if value is _OMITTED:
            value = task.get("data")
        if isinstance(value, dict):
            return {k: self.preload_task_data(task, v, read_file) for k, v in value.items()}
        if isinstance(value, list):
            return [self.preload_task_data(task, v, read_file) for v in value]
        if isinstance(value, str) and is_preload_needed(value):
            path = self.get_local_path(url=value, task_id=task.get("id"))
            if not read_file:
                return path
            with open(path, "r") as f:
                return f.read()
        return value
