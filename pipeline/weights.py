"""The content hash that names a student's weights (model card, model_version)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.process_cache import ProcessCache

_digests: ProcessCache = ProcessCache("weights sha256")  # path -> (size, mtime_ns, sha256)


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
    stamp = (st.st_size, st.st_mtime_ns)
    return _digests.get(str(path), lambda: (*stamp, sha256_file(path)), fresh=lambda v: v[:2] == stamp)[2]


def weights_tag(path) -> str:
    """12 hex digits of the weights' sha256, or ``missing`` (the provider then refuses to load)."""
    digest = weights_sha256(path)
    return digest[:12] if digest else "missing"
