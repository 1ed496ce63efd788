"""Safe image loading: EXIF orientation applied, decompression bombs and broken files refused."""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

from PIL import Image, ImageOps

# Pillow's own default warns at ~89 MP and errors at 2x that; we refuse above this outright.
MAX_PIXELS = 80_000_000


class ImageLoadError(ValueError):
    """An image that cannot be used; the message says why (for logs, run records, responses)."""


def open_image(source: Union[str, Path, bytes], max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (path or bytes) to an RGB image with EXIF orientation applied."""
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    except OSError as e:
        raise ImageLoadError(f"{name}: cannot read file: {e.strerror or e}") from None
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageLoadError(f"{name}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                                     "(decompression bomb?)")
            im.load()
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"{name}: refused as a decompression bomb: {e}") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{name}: corrupt or truncated image: {e}") from None
