"""The content hash that names a student's weights (model card, model_version)."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

_cache: dict[tuple, str] = {}
_lock = threading.Lock()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(path) -> str | None:
    """sha256 of the file, computed once per (path, size, mtime); None when there is no such file.

    model_version asks on every request: a re-hash happens only when the file changed."""
    path = Path(path).expanduser().resolve()
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    digest = sha256_file(path)
    with _lock:
        _cache[key] = digest
    return digest


def weights_tag(path) -> str:
    """12 hex digits of the weights' sha256, or ``missing`` (the provider then refuses to load)."""
    digest = weights_sha256(path)
    return digest[:12] if digest else "missing"
