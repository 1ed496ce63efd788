"""Importing ultralytics for label-factory: no telemetry, and no download that a run does not need.

* Ultralytics' anonymous usage analytics are switched off in this process (``events.enabled``;
  nothing is written to the user's ultralytics settings).
* While checking a data set, ultralytics fetches the Arial.ttf font from GitHub even when nothing
  will be plotted; with ``plots=False`` that check only looks on disk (``local_fonts_only``).
* Nothing else here: pretrained checkpoints (``yolo11n.pt``) download the normal ultralytics way,
  a model config (``yolo11n.yaml``) builds random weights with no download. ``YOLO_CONFIG_DIR``
  says where ultralytics keeps its settings and fonts (tests point it at a temporary folder).

Needs the ``train`` extra (``pip install label-factory[train]``)."""
from __future__ import annotations

from contextlib import contextmanager


class UltralyticsMissing(ImportError):
    """ultralytics is not installed."""


def ultralytics():
    """The ``ultralytics`` module, analytics off (raises UltralyticsMissing with the install hint)."""
    try:
        import ultralytics as ul
        from ultralytics.utils import events
    except ImportError as e:
        raise UltralyticsMissing("the student detector needs ultralytics: pip install 'label-factory[train]' "
                                 f"({e})") from None
    events.events.enabled = False
    return ul


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
