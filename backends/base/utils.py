"""Helpers upstream ``label_studio_ml.utils`` gives model classes, with the same names and meaning.

Label-config lookups on the parsed config (``get_single_tag_keys``, ``get_first_tag_keys``), task
and annotation helpers (``is_skipped``, ``get_choice``, ``DATA_UNDEFINED_NAME``), image size,
a small LRU dict, text-to-label matching, which task values ``preload_task_data`` fetches
(``is_preload_needed``) and a float-tolerant comparison for tests. Nothing here does I/O
except ``get_image_size`` (reads the image header) and ``is_preload_needed`` (checks a path)."""
from __future__ import annotations

import builtins
import difflib
import os
from collections import OrderedDict
from typing import Any, Hashable, List, Optional, Tuple
from urllib.parse import urlparse

from backends.base.errors import LabelConfigError

# task["data"] key Label Studio uses for a task imported without a named field
DATA_UNDEFINED_NAME = "$undefined$"

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def get_single_tag_keys(parsed_label_config: dict, control_type: str, object_type: str) -> Tuple[str, str, str, list]:
    """(from_name, to_name, value, labels) of a config with exactly one control tag, of
    ``control_type``, on exactly one object tag, of ``object_type`` (e.g. one Choices on one Text).

    ``parsed_label_config`` is ``LabelStudioMLBase.parsed_label_config``. Any other shape raises
    ``LabelConfigError`` (a 422 for Label Studio) naming what was expected."""
    if len(parsed_label_config) != 1:
        raise LabelConfigError(f"this model needs exactly one control tag (<{control_type}>) in the labeling "
                               f"config, found {len(parsed_label_config)}")
    from_name, info = next(iter(parsed_label_config.items()))
    if info.get("type") != control_type:
        raise LabelConfigError(f"the labeling config has <{info.get('type')}> where this model expects "
                               f"<{control_type}>")
    to_names, inputs = info.get("to_name") or [], info.get("inputs") or []
    if len(to_names) != 1 or len(inputs) != 1 or inputs[0].get("type") != object_type:
        raise LabelConfigError(f"<{control_type} name={from_name!r}> must point to exactly one <{object_type}>")
    return from_name, to_names[0], inputs[0]["value"], info.get("labels", [])


def get_first_tag_keys(parsed_label_config: dict, control_type: str, object_type: str
                       ) -> Tuple[Optional[str], Optional[dict]]:
    """(from_name, its parsed entry) of the first ``control_type`` tag with an ``object_type`` input,
    else (None, None)."""
    for from_name, info in parsed_label_config.items():
        if info.get("type") == control_type and any(i.get("type") == object_type for i in info.get("inputs", [])):
            return from_name, info
    return None, None


def is_skipped(completion: dict) -> bool:
    """A task with a single annotation that was skipped (cancelled) in Label Studio."""
    annotations = completion.get("annotations") or []
    if len(annotations) != 1:
        return False
    only = annotations[0]
    return bool(only.get("skipped") or only.get("was_cancelled"))


def get_choice(completion: dict):
    """The first choice of the first result of the task's first annotation."""
    return completion["annotations"][0]["result"][0]["value"]["choices"][0]


def get_image_size(filepath) -> Tuple[int, int]:
    """(width, height) as Label Studio shows the image: EXIF rotation applied. Reads the header only."""
    from PIL import Image
    with Image.open(filepath) as img:
        width, height = img.size
        orientation = img.getexif().get(_EXIF_ORIENTATION)
    return (height, width) if orientation in _TRANSPOSED else (width, height)


class InMemoryLRUDictCache:
    """A dict of at most ``capacity`` entries; putting one more drops the least recently used."""

    def __init__(self, capacity: int = 1):
        self.capacity = capacity
        self.cache: OrderedDict = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self.cache

    def get(self, key: Hashable) -> Any:
        if key not in self.cache:
            return None
        self.cache.move_to_end(key)
        return self.cache[key]

    def put(self, key: Hashable, value: Any) -> None:
        self.cache[key] = value
        self.cache.move_to_end(key)
        while len(self.cache) > self.capacity:
            self.cache.popitem(last=False)

    def __str__(self) -> str:
        return str(self.cache)


def match_labels(input: str, labels: List[str]) -> List[str]:  # noqa: A002 - upstream's parameter name
    """For each line of ``input`` (e.g. an LLM's answer), the label in ``labels`` it is most similar to."""
    out = []
    for line in input.splitlines():
        out.append(max(labels, key=lambda label: difflib.SequenceMatcher(None, line, label).ratio()))
    return out


def is_valid_url(path: str) -> bool:
    """An absolute URL: a scheme and a host."""
    try:
        parsed = urlparse(path)
    except ValueError:
        return False
    return bool(parsed.scheme and parsed.netloc)


def needs_download(url: str) -> bool:
    """A Label Studio upload (``/data/upload/...``, ``upload/...``), local-storage file
    (``/data/...?d=...``), storage-proxy URL (``/storage-data/...``), cloud URI (``s3:``, ``gs:``,
    ``azure-blob:``) or absolute URL: a file the SDK's ``get_local_path`` fetches."""
    if url.startswith(("upload/", "/upload/")):
        url = "/data/" + url.lstrip("/")
    return (url.startswith(("/data/upload", "/storage-data/", "s3:", "gs:", "azure-blob:"))
            or (url.startswith("/data/") and "?d=" in url)
            or is_valid_url(url))


def is_preload_needed(url: str) -> bool:
    """Whether ``preload_task_data`` replaces this task value by the file it names: one to
    download (``needs_download``) or a path that exists on this machine."""
    return needs_download(url) or os.path.exists(url)


def compare_nested_structures(a, b, path: str = "", rel: float = 1e-4, abs: Optional[float] = None) -> None:  # noqa: A002
    """Assert that two nested dicts/lists are equal, floats within ``rel`` (relative to ``b``) or ``abs``."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"keys differ at {path or '.'}: {sorted(a)} != {sorted(b)}"
        for key in a:
            compare_nested_structures(a[key], b[key], f"{path}.{key}", rel, abs)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"lengths differ at {path or '.'}: {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            compare_nested_structures(x, y, f"{path}[{i}]", rel, abs)
    elif isinstance(a, float) and isinstance(b, float):
        tolerance = max(rel * builtins.abs(b), 1e-12 if abs is None else abs)
        assert builtins.abs(a - b) <= tolerance, f"{a} != {b} (±{tolerance}) at {path or '.'}"
    else:
        assert a == b, f"{a!r} != {b!r} at {path or '.'}"
