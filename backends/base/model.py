"""``LabelStudioMLBase``: the label-studio-ml 2.x model class contract.

A model object is created per request with the project id and labeling config; state that
must outlive the request (model_version, label config, extra params) lives in the per-project
cache (``get``/``set``/``has``), heavy objects belong in module-level singletons."""
from __future__ import annotations

import json
import logging
import re
from typing import Callable, Dict, List, Optional, Tuple, Union

from label_studio_sdk._extensions.label_studio_tools.core.label_config import parse_config
from label_studio_sdk._extensions.label_studio_tools.core.utils.io import get_local_path as _sdk_get_local_path
from label_studio_sdk.label_interface import LabelInterface

from backends.base import credentials
from backends.base.cache import get_cache
from backends.base.response import ModelResponse

log = logging.getLogger(__name__)

# Upstream label-studio-ml 2.x lists ANNOTATION_CREATED/UPDATED/DELETED and START_TRAINING. Label Studio
# 1.23 has no singular ANNOTATION_DELETED: a deletion sends ANNOTATIONS_DELETED (body
# {"annotations": [{"id": ...}], "project": {...}}), and imports send the bulk ANNOTATIONS_CREATED. The
# webhook it creates for a connected ML backend sends every action, so both reach /webhook -> fit().
TRAIN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED",
                "ANNOTATIONS_DELETED", "START_TRAINING")
_PRELOAD_PREFIXES = ("http://", "https://", "/data/", "data/", "upload/", "/upload/", "/storage-data/", "s3:", "gs:",
                     "azure-blob:")


class LabelStudioMLBase:
    INITIAL_MODEL_VERSION = "0.0.1"
    TRAIN_EVENTS = TRAIN_EVENTS

    def __init__(self, project_id: Optional[str] = None, label_config: Optional[str] = None):
        self.project_id = str(project_id or "")
        self.label_interface: Optional[LabelInterface] = None
        if label_config:
            self.use_label_config(label_config)
        elif self.label_config:
            self.label_interface = LabelInterface(config=self.label_config)
        if not self.model_version:
            self.set("model_version", self.INITIAL_MODEL_VERSION)
        self.setup()

    def setup(self):
        """Override: per-request set-up, e.g. ``self.set("model_version", ...)``. Must be fast
        (Label Studio gives /setup 3 s): load weights once per process, not here."""

    # -- labeling config --------------------------------------------------------------
    def use_label_config(self, label_config: str) -> None:
        self.label_interface = LabelInterface(config=label_config)
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
    def model_version(self) -> Optional[str]:
        return self.get("model_version")

    def bump_model_version(self) -> str:
        mv = self.model_version or self.INITIAL_MODEL_VERSION
        m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", mv)
        new = f"{m[1]}.{int(m[2]) + 1}.0" if m else f"{mv}.1"
        self.set("model_version", new)
        return new

    # -- predict / train --------------------------------------------------------------
    def predict(self, tasks: List[Dict], context: Optional[Dict] = None,
                **kwargs) -> Union[List[Dict], ModelResponse, None]:
        """Override: predictions for ``tasks`` (one entry per task, in order)."""
        return None

    def process_event(self, event, data, job_id=None, additional_params=None):
        if event in self.TRAIN_EVENTS:
            return self.fit(event=event, data=data, job_id=job_id, **(additional_params or {}))

    def fit(self, event, data, **kwargs):
        """Override: update the model on an annotation event or START_TRAINING."""
        return None

    # -- data access --------------------------------------------------------------------
    def get_label_studio_access_token(self) -> str:
        """Legacy token as is, or a current access token exchanged for the personal access token."""
        return credentials.access_token()

    def get_local_path(self, url, project_dir=None, ls_host=None, ls_access_token=None, task_id=None, *args,
                       **kwargs) -> str:
        """Download (or find) the file behind a task URL via the SDK, with the Label Studio token."""
        if ls_access_token is None:
            ls_access_token = self.get_label_studio_access_token()
        hostname = ls_host or credentials.label_studio_url()
        return _sdk_get_local_path(url, *args, project_dir=project_dir, hostname=hostname,
                                   access_token=ls_access_token, task_id=task_id, **kwargs)

    def preload_task_data(self, task: Dict, value=None, read_file: bool = True):
        """Replace URL-like values in ``value`` (default: ``task['data']``) by file contents (or paths)."""
        value = task.get("data") if value is None else value
        if isinstance(value, dict):
            return {k: self.preload_task_data(task, v, read_file) for k, v in value.items()}
        if isinstance(value, list):
            return [self.preload_task_data(task, v, read_file) for v in value]
        if isinstance(value, str) and value.startswith(_PRELOAD_PREFIXES):
            path = self.get_local_path(value, task_id=task.get("id"))
            if not read_file:
                return path
            with open(path) as f:
                return f.read()
        return value
