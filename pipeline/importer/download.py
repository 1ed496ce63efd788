"""Fetch one candidate image: size cap, content-type check, decode check (via
pipeline.images.open_image: not an image / truncated / decompression bomb), hashes.
The retries (429/5xx, with backoff) and the per-host rate limit come from :class:`Http`;
the bounded concurrency is the caller's thread pool."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Optional

import imagehash
import requests
from PIL import Image

from pipeline.images import MAX_PIXELS, ImageLoadError, open_image
from pipeline.importer.http import Http
from pipeline.importer.records import Candidate
from pipeline.retry import Transient

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
# Stored as downloaded when no EXIF rotation is needed; anything else is re-encoded to JPEG.
KEEP_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
OK_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")

# Rejection reasons (the summary's keys)
R_HTTP = "http error"
R_FAILED = "download failed"
R_NOT_IMAGE = "not an image"
R_TOO_LARGE = "too large"
R_CORRUPT = "truncated or corrupt"
R_BOMB = "decompression bomb"
R_TOO_SMALL = "too small"
R_UNSUPPORTED = "unsupported format"


@dataclass
class Fetched:
    candidate: Candidate
    ok: bool
    reason: str = ""
    detail: str = ""
    data: bytes = b""
    image: Optional[Image.Image] = field(default=None, repr=False)  # RGB, EXIF orientation applied
    format: str = ""
    orientation: int = 1
    sha256: str = ""
    phash: str = ""

    def encoded(self) -> tuple[bytes, str]:
        """Bytes to store and their extension: the original bytes when they can be shown as they
        are, otherwise the EXIF-rotated image re-encoded as JPEG."""
        if self.format in KEEP_FORMATS and self.orientation in (0, 1):
            return self.data, KEEP_FORMATS[self.format]
        buf = io.BytesIO()
        self.image.save(buf, "JPEG", quality=95)
        return buf.getvalue(), ".jpg"


def classify(err: ImageLoadError) -> str:
    msg = str(err)
    if "not an image" in msg or "empty file" in msg:
        return R_NOT_IMAGE
    if "bomb" in msg or "exceeds the limit" in msg:
        return R_BOMB
    return R_CORRUPT


class Downloader:
    def __init__(self, http: Http, max_bytes: int = DEFAULT_MAX_BYTES, min_side: int = 32,
                 max_pixels: int = MAX_PIXELS):
        self.http = http
        self.max_bytes = max_bytes
        self.min_side = min_side
        self.max_pixels = max_pixels

    def fetch(self, cand: Candidate) -> Fetched:
        def reject(reason: str, detail: str) -> Fetched:
            return Fetched(cand, False, reason, detail)

        try:
            resp = self.http.get(cand.image_url, stream=True, headers={"Accept": "image/*"})
        except Transient as e:
            return reject(R_FAILED, f"{e} (gave up after retries)")
        except requests.RequestException as e:
            return reject(R_FAILED, f"{type(e).__name__}: {e}")
        with resp:
            if resp.status_code >= 400:
                return reject(R_HTTP, f"HTTP {resp.status_code}")
            ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype and not ctype.startswith(OK_CONTENT_TYPES):
                return reject(R_NOT_IMAGE, f"content-type {ctype}")
            if ctype in ("image/svg+xml",):
                return reject(R_UNSUPPORTED, ctype)
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > self.max_bytes:
                return reject(R_TOO_LARGE, f"{length} bytes > {self.max_bytes}")
            buf = bytearray()
            try:
                for chunk in resp.iter_content(64 * 1024):
                    buf += chunk
                    if len(buf) > self.max_bytes:
                        return reject(R_TOO_LARGE, f"more than {self.max_bytes} bytes")
            except requests.RequestException as e:
                # Includes a body shorter than its Content-Length: a truncated transfer.
                return reject(R_CORRUPT, f"transfer broke off: {type(e).__name__}: {e}")
        data = bytes(buf)
        try:
            image = open_image(data, max_pixels=self.max_pixels)
        except ImageLoadError as e:
            return reject(classify(e), str(e).replace("<bytes>: ", ""))
        if min(image.size) < self.min_side:
            return reject(R_TOO_SMALL, f"{image.size[0]}x{image.size[1]} < {self.min_side}px")
        with Image.open(io.BytesIO(data)) as raw:
            fmt = raw.format or ""
            try:
                orientation = int(raw.getexif().get(0x0112, 1) or 1)
            except Exception:  # noqa: BLE001 - broken EXIF: open_image already coped
                orientation = 1
        return Fetched(cand, True, data=data, image=image, format=fmt, orientation=orientation,
                       sha256=hashlib.sha256(data).hexdigest(), phash=str(imagehash.phash(image)))
