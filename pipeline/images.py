"""Safe image loading and the pixel budgets: decode once, at a bounded working resolution, downscale per stage.

* ``open_image``: full-resolution RGB (EXIF orientation applied; decompression bombs and broken files
  refused), for callers that keep or hash the pixels (importer, identify references).
* ``open_photo``: the same checks, decoded at the working resolution (``Photo``); what the pipeline runs on.
  Above it a JPEG is decoded reduced by libjpeg and a PNG a band of rows at a time (``png_bands``); any other
  image above it is refused, since decoding it whole would hold the full-size pixels several times over.
* ``Photo.view(max_pixels, square)``: the whole image at most ``max_pixels`` (a ``View``; ``square``: counted
  as the square of its longest side, for models that pad to one), which maps boxes, points and masks between
  its pixels and the original's exactly.
* ``refuse_thin``: an image thinner than the project allows (``budgets.max_aspect_ratio``) is refused.

Geometry: a working image decoded at 1/f (JPEG DCT scaling, or ``Image.reduce``) has pixel i covering
original pixels [f*i, f*(i+1)), so x_original = f * x_working exactly (the last pixel may be partial);
a resize maps the extent [0, w] onto [0, w'] linearly on each axis.  Coordinates are pixel edges.
"""
from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin

from pipeline import png_bands

# Pillow's own default warns at ~89 MP and errors at 2x that; we refuse above this outright.
MAX_PIXELS = 80_000_000
REDUCTIONS = (1, 2, 4, 8)  # the scales libjpeg decodes at directly
RESAMPLE = Image.Resampling.BICUBIC
REDUCING_GAP = 3.0  # resize via an integer box-reduce first: fast on big images, same result to the eye


class ImageLoadError(ValueError):
    """An image that cannot be used; the message says why (for logs, run records, responses)."""


class ImageShapeError(ImageLoadError):
    """An image too thin for the project's models (``budgets.max_aspect_ratio``)."""


def fit_size(width: float, height: float, max_pixels: Optional[int], square: bool = False) -> tuple[int, int]:
    """The size to downscale ``width`` x ``height`` to so it has at most ``max_pixels`` (aspect kept);
    the size itself (rounded) when it already fits or there is no budget.

    ``square``: for a model that pads (or stretches) its input to a square of the longest side, the budget
    counts that square, ``max(w, h)**2``, which for a thin image is far more than ``w * h``."""
    w, h = max(1, round(width)), max(1, round(height))
    counted = max(w, h) ** 2 if square else w * h
    if not max_pixels or counted <= max_pixels:
        return w, h
    k = math.sqrt(max_pixels) / max(width, height) if square else math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * k)), max(1, math.floor(height * k))


def aspect_ratio(width: int, height: int) -> float:
    """The longest side over the shortest (1 for a square)."""
    return max(width, height) / max(1, min(width, height))


def refuse_thin(width: int, height: int, max_ratio: Optional[float]) -> None:
    """Raise ``ImageShapeError`` when ``width`` x ``height`` is thinner than ``max_ratio``:1 (None: any)."""
    ratio = aspect_ratio(width, height)
    if max_ratio is not None and ratio > max_ratio:
        side = max(width, height)
        raise ImageShapeError(
            f"{width}x{height} image: aspect ratio {ratio:.0f}:1 is beyond budgets.max_aspect_ratio "
            f"({max_ratio:g}:1): the models see it as a sliver (OWLv2 and SAM pad it to a {side}x{side} square, "
            f"Qwen2.5-VL refuses beyond 200:1); cut it into pieces of at most {max_ratio:g}:1, or raise "
            "budgets.max_aspect_ratio in the project YAML")


def reduction_for(width: int, height: int, working_pixels: Optional[int]) -> int:
    """The least of 1, 2, 4, 8 that brings ``width`` x ``height`` to at most ``working_pixels`` (8 at most)."""
    if not working_pixels:
        return 1
    for f in REDUCTIONS:
        if math.ceil(width / f) * math.ceil(height / f) <= working_pixels:
            return f
    return REDUCTIONS[-1]


@dataclass(frozen=True)
class Photo:
    """An image at its working resolution and the size of the original it stands for.

    ``width`` / ``height`` / ``size`` are the ORIGINAL's (EXIF-oriented): boxes, Label Studio percentages
    and original_width/height use them.  ``pixels`` may be smaller: ``scale`` original pixels per working
    pixel, the same on both axes."""
    pixels: Image.Image
    width: int
    height: int
    scale: int = 1
    _views: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # (budget, square) -> View

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @classmethod
    def of(cls, image: Union[Image.Image, "Photo"], working_pixels: Optional[int] = None) -> "Photo":
        """``image`` as a Photo at most ``working_pixels`` (box-averaged by 2, 4 or 8 when bigger)."""
        photo = image if isinstance(image, Photo) else cls(_rgb(image), image.width, image.height)
        f = reduction_for(*photo.pixels.size, working_pixels)
        if f == 1:
            return photo
        return cls(photo.pixels.reduce(f), photo.width, photo.height, photo.scale * f)

    def view(self, max_pixels: Optional[int], square: bool = False) -> "View":
        """The whole image with at most ``max_pixels`` (``square``: its longest side squared at most, for a
        model that pads to a square, see ``fit_size``), and the way back to original pixels (made once per
        budget: the grounder and the segmenter look at the same view)."""
        key = (max_pixels, square)
        if key not in self._views:
            w, h = self.pixels.size
            size = fit_size(w, h, max_pixels, square)
            im = self.pixels if size == (w, h) else self.pixels.resize(size, RESAMPLE, reducing_gap=REDUCING_GAP)
            self._views[key] = View(im, self.scale * w / size[0], self.scale * h / size[1], self.size)
        return self._views[key]

    def region(self, box: tuple[int, int, int, int], max_pixels: Optional[int] = None) -> Image.Image:
        """Original-pixel ``box`` (l, t, r, b) cut from the working pixels, at most ``max_pixels``.

        At full resolution and within the budget this is an exact ``crop``; otherwise crop and resize
        are one resampling of exactly that region."""
        s = self.scale
        l, t, r, b = (v / s for v in box)
        size = fit_size(r - l, b - t, max_pixels)
        if s == 1 and size == (box[2] - box[0], box[3] - box[1]):
            return self.pixels.crop(box)
        return self.pixels.resize(size, RESAMPLE, box=(l, t, r, b), reducing_gap=REDUCING_GAP)


@dataclass(frozen=True)
class View:
    """A downscaled whole image a model looks at, and the exact map between its pixels and the original's:
    x_original = sx * x_view, y_original = sy * y_view (pixel edges)."""
    image: Image.Image
    sx: float
    sy: float
    original_size: tuple[int, int]

    @property
    def identity(self) -> bool:
        return (self.sx, self.sy) == (1.0, 1.0)

    def boxes_out(self, xyxy) -> np.ndarray:
        """(N, 4) view-pixel boxes -> original pixels."""
        return np.asarray(xyxy, np.float64).reshape(-1, 4) * np.array([self.sx, self.sy, self.sx, self.sy])

    def boxes_in(self, xyxy) -> np.ndarray:
        """(N, 4) original-pixel boxes -> view pixels."""
        return np.asarray(xyxy, np.float64).reshape(-1, 4) / np.array([self.sx, self.sy, self.sx, self.sy])

    def points_in(self, points) -> np.ndarray:
        """(N, 2) original-pixel points -> view pixels."""
        return np.asarray(points, np.float64).reshape(-1, 2) / np.array([self.sx, self.sy])

    def mask_out(self, mask) -> np.ndarray:
        """A (h, w) bool mask over the view -> (H, W) over the original (nearest pixel centre)."""
        mask = np.asarray(mask, bool)
        if self.identity and mask.shape == self.original_size[::-1]:
            return mask
        return np.asarray(Image.fromarray(mask).resize(self.original_size, Image.Resampling.NEAREST))


def _rgb(im: Image.Image) -> Image.Image:
    return im if im.mode == "RGB" else im.convert("RGB")


def _read(source: Union[str, Path, bytes]) -> tuple[str, bytes]:
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    except OSError as e:
        raise ImageLoadError(f"{name}: cannot read file: {e.strerror or e}") from None
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    return name, data


def _decode(source, max_pixels: int, working_pixels: Optional[int]) -> Photo:
    name, data = _read(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageLoadError(f"{name}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                                     "(decompression bomb?)")
            f = reduction_for(w, h, working_pixels)
            drafted = 1
            if f > 1 and isinstance(im, JpegImagePlugin.JpegImageFile):  # JPEG, and MPO (camera JPEGs)
                # libjpeg decodes at 1/f directly: the full-size pixels are never held
                res = im.draft(None, (w // f, h // f))
                drafted = round(w / res[1][2]) if res else 1
            elif f > 1:  # a PNG a band of rows at a time, each reduced by f as it comes
                banded = png_bands.decode_reduced(data, f) if im.format == "PNG" else None
                if banded is None:
                    raise ImageLoadError(
                        f"{name}: {w}x{h} {im.format} image above the working resolution (budgets.decode_pixels "
                        f"= {working_pixels:,} pixels): only JPEG and 8-bit non-interlaced PNG are decoded at a "
                        f"reduced size, and decoding this whole would hold several full-size copies; convert it to "
                        f"JPEG or PNG, or raise budgets.decode_pixels in the project YAML")
                im, exif = banded
                drafted = f
                if exif:
                    im.info["exif"] = exif
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            original = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # exif_transpose swaps these
            if orientation != 1:  # exif_transpose copies even when there is nothing to do
                im = ImageOps.exif_transpose(im)
            im = _rgb(im)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"{name}: refused as a decompression bomb: {e}") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{name}: corrupt or truncated image: {e}") from None
    return Photo.of(Photo(im, *original, scale=drafted), working_pixels)


def open_image(source: Union[str, Path, bytes], max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (path or bytes) to a full-resolution RGB image with EXIF orientation applied."""
    return _decode(source, max_pixels, None).pixels


def open_photo(source: Union[str, Path, bytes], working_pixels: Optional[int],
               max_pixels: int = MAX_PIXELS) -> Photo:
    """Decode ``source`` at the working resolution (see ``reduction_for``); the original size is kept."""
    return _decode(source, max_pixels, working_pixels)


def pixels_digest(image: Image.Image) -> str:
    """What a model sees, as a key: mode, size and every pixel (the answer cache's, SAM's embedding cache's)."""
    h = hashlib.blake2b(f"{image.mode}:{image.width}x{image.height}:".encode(), digest_size=20)
    h.update(image.tobytes())
    return h.hexdigest()
