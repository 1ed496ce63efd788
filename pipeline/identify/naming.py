"""Reference filename -> (label, variant).

``LOCH-JP001_dark_magician_ur.jpg`` -> ("Dark Magician", "ur"):

1. the extension goes;
2. a set-code prefix (``LOCH-JP001_``, ``SDK-001_``, ``RA01-EN054_``: letters/digits, a dash,
   an optional region code and a number, then ``_``) is stripped;
3. a trailing copy number (``_2``, ``-3``, `` (2)``) is dropped;
4. a trailing rarity token (``pscr scr ur sr op utr cr ea gmr``, any case) becomes the variant;
5. underscores become spaces, runs of spaces collapse, and the words are title-cased
   (each word and each part after a hyphen starts upper-case, the rest lower-case).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

RARITIES = ("pscr", "scr", "ur", "sr", "op", "utr", "cr", "ea", "gmr")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

_SET_CODE = re.compile(r"^[A-Za-z0-9]{2,6}-[A-Za-z]{0,3}\d{1,4}[A-Za-z]?_+")
_COPY_NUMBER = re.compile(r"(?:[_\-\s]+\d{1,3}|\s*\(\d{1,3}\))$")
_RARITY = re.compile(r"[_\-\s]+(" + "|".join(RARITIES) + r")$", re.IGNORECASE)


def title_case(text: str) -> str:
    words = []
    for word in text.split(" "):
        words.append("-".join(p[:1].upper() + p[1:].lower() for p in word.split("-")))
    return " ".join(words)


def label_from_filename(name: str) -> tuple[str, Optional[str]]:
    """(label, variant) for a reference image's file name (a path works too)."""
    stem = Path(name).name
    if Path(stem).suffix.lower() in IMAGE_SUFFIXES:
        stem = Path(stem).stem
    stem = stem.strip()
    rest = _SET_CODE.sub("", stem, count=1) or stem
    rest = _COPY_NUMBER.sub("", rest) or rest
    variant = None
    m = _RARITY.search(rest)
    if m and m.start() > 0:
        variant = m.group(1).lower()
        rest = rest[:m.start()]
    text = re.sub(r"\s+", " ", rest.replace("_", " ")).strip(" -")
    return title_case(text) if text else stem, variant
