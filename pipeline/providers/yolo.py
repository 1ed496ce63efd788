"""Importing ultralytics for label-factory: no telemetry, and no download that a run does not need.

* Ultralytics' anonymous usage analytics are switched off in this process (``events.enabled``;
  nothing is written to the user's ultralytics settings).
* While checking a data set, ultralytics fetches the Arial.ttf font from GitHub even when nothing
  will be plotted; with ``plots=False`` that check only looks on disk (``local_fonts_only``).
* ``import ultralytics`` and its device selection would pin torch to one thread on a 2-core machine
  for the whole process (other providers included): both are undone (``ultralytics``,
  ``keep_torch_threads``).
* ``import ultralytics`` replaces ``PIL.Image.open`` process-wide with a version that, on any file
  Pillow cannot identify, pip-installs and imports pi-heif (HEIC support): a corrupt upload would then
  fail with ModuleNotFoundError (or a run-time install) instead of pipeline/images.py's "not an
  image". Pillow's own ``Image.open`` is put back; ``YOLO_AUTOINSTALL`` defaults to false.
* Nothing else here: pretrained checkpoints (``yolo11n.pt``) download the normal ultralytics way,
  a model config (``yolo11n.yaml``) builds random weights with no download. ``YOLO_CONFIG_DIR``
  says where ultralytics keeps its settings and fonts (tests point it at a temporary folder).

Needs the ``train`` extra (``pip install label-factory[train]``)."""
from __future__ import annotations

import os
from contextlib import contextmanager


class UltralyticsMissing(ImportError):
    """ultralytics is not installed."""


def ultralytics():
    """The ``ultralytics`` module, analytics off (raises UltralyticsMissing with the install hint).

    ``import ultralytics`` sets OMP_NUM_THREADS=1 when it is unset, which would pin torch (if torch is
    imported after it) and every child process to one thread: torch is imported first and the
    variable is put back as it was, so the other models in the process keep their threads."""
    import torch  # noqa: F401 - before ultralytics: torch reads OMP_NUM_THREADS when it starts
    omp = os.environ.get("OMP_NUM_THREADS")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install anything at run time
    try:
        import ultralytics as ul
        from ultralytics.utils import events, patches
    except ImportError as e:
        raise UltralyticsMissing("the student detector needs ultralytics: pip install 'label-factory[train]' "
                                 f"({e})") from None
    finally:
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp
    from PIL import Image
    if Image.open is getattr(patches, "image_open", None):  # put Pillow's own back (see the module docstring)
        Image.open = patches._image_open
    events.events.enabled = False
    return ul


@contextmanager
def keep_torch_threads():
    """ultralytics' device selection calls ``torch.set_num_threads(cores - 1)`` for the whole process (1 on
    a 2-core machine); inside this block that change is undone on the way out."""
    import torch
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


@contextmanager
def local_fonts_only():
    """Inside: ultralytics' data-set check finds fonts on disk only (it downloads Arial.ttf otherwise)."""
    ultralytics()
    import ultralytics.data.utils as data_utils

    original = data_utils.check_font

    def check_font(font="Arial.ttf"):
        from pathlib import Path

        from matplotlib import font_manager
        from ultralytics.utils import USER_CONFIG_DIR
        if (USER_CONFIG_DIR / Path(font).name).exists():
            return USER_CONFIG_DIR / Path(font).name
        return next((f.fname for f in font_manager.fontManager.ttflist if font in f.fname), None)

    data_utils.check_font = check_font
    try:
        yield
    finally:
        data_utils.check_font = original


def torch_device(device: str) -> str:
    """``auto`` -> cuda, else mps, else cpu; ``cuda``/``cuda:N`` -> ultralytics' ``0``/``N``."""
    import torch
    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "0"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device == "cuda":
        return "0"
    return device.removeprefix("cuda:")
