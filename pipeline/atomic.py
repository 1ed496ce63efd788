"""Atomic replacement of a file or a directory: a reader sees the old one or the new one, never a torn one.

``save_atomic(path, writer)`` calls ``writer(f)`` on a temp file in the same directory
(``.<name>.tmp-<pid>-<random>``), fsyncs it, ``os.replace``-s it over ``path`` and fsyncs the
directory.  A writer that raises (or a process killed midway) leaves ``path`` as it was; a writer
that raises also takes its temp file away, a killed process leaves it, and the owner of ``path``
sweeps those (``tmp_prefix``) under its lock.  ``save_text`` is the same for a string.

``building_dir(path)`` is the same for a directory: the caller fills a fresh sibling folder, which
replaces ``path`` only when the block ends without an error (two renames: the old folder is moved
aside, the new one in; the old one comes back if the second rename fails, and a process killed
between the two leaves it at ``.<name>.old-<pid>``).

Every state or output file the package writes goes through here; it holds no locks of its own."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional, Union


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


def save_atomic(path: Union[str, Path], writer: Callable, mode: Optional[int] = None) -> None:
    """``writer(f)`` (a binary file) becomes ``path``; ``mode``: the new file's permissions from its
    creation on (e.g. 0o600 for a file that holds a secret; default: 0o666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{tmp_prefix(path)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def save_text(path: Union[str, Path], text: str, mode: Optional[int] = None) -> None:
    """``text`` (UTF-8) becomes ``path``, atomically."""
    data = text.encode("utf-8")
    save_atomic(path, lambda f: f.write(data), mode)


@contextlib.contextmanager
def building_dir(path: Union[str, Path]) -> Iterator[Path]:
    """A fresh empty sibling folder of ``path`` to fill; it replaces ``path`` when the block ends
    without an error, and is removed in any case."""
    path = Path(path)
    new = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    try:
        yield new
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(new, path)
        except BaseException:
            if old.exists():
                os.replace(old, path)
            raise
        _fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(new, ignore_errors=True)
