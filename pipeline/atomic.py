"""Atomic file replacement: a reader sees the old file or the new one, never a torn one.

``save_atomic(path, writer)`` calls ``writer(f)`` on a temp file in the same directory
(``.<name>.tmp-<pid>-<random>``), fsyncs it, ``os.replace``-s it over ``path`` and fsyncs the
directory.  A writer that raises (or a process killed midway) leaves ``path`` as it was; a killed
process leaves its temp file, which the owner of ``path`` sweeps (``tmp_prefix``) under its lock."""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Callable, Union


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tmp_prefix(path: Path) -> str:
    """The name prefix of ``path``'s temp files."""
    return f".{Path(path).name}.tmp-"


def save_atomic(path: Union[str, Path], writer: Callable) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{tmp_prefix(path)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
