"""A PNG decoded a band of rows at a time, each band box-reduced as it comes: the full-size pixels never
exist (Pillow decodes a PNG whole; a 79 MP RGBA one holds ~600 MB on the way to its reduced copy).

Pillow does every pixel operation; this module only moves bytes:

1. the IDAT zlib stream is inflated a band of rows at a time (``zlib.decompressobj`` with ``max_length``);
2. Pillow's own PNG decoder unfilters each band: its rows go into a small PNG of an 8-bit colour type with
   the same bytes per pixel (filters work on bytes: 16-bit grey reads as grey+alpha, 1-bit as grey, ...),
   after the previous band's last unfiltered row stored with filter 0, which is all that the Up /
   Average / Paeth filters of the band's first row look at;
3. the unfiltered rows are unpacked with the rawmode Pillow itself decodes the file with
   (``Image.frombuffer``), palette applied, converted to RGB and reduced by the factor.

Bands are a multiple of the factor high, so the result is pixel for pixel ``Image.reduce`` of the whole
image.  Interlaced (Adam7) PNGs and 16-bit colour (6 or 8 bytes per pixel, which no 8-bit colour type
matches) are not streamed: ``decode_reduced`` returns None and the caller decodes them whole."""
from __future__ import annotations

import io
import struct
import zlib
from typing import Iterator, Optional

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
BAND_BYTES = 2**20  # unfiltered bytes per band (several copies of it are alive while a band is decoded)
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
SAME_BYTES = {1: 0, 2: 4, 3: 2, 4: 6}  # bytes per pixel -> an 8-bit colour type with as many (grey, GA, RGB, RGBA)


def _chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    view = memoryview(data)
    if bytes(view[:8]) != SIGNATURE:
        raise OSError("not a PNG file")
    pos = 8
    while pos + 8 <= len(view):
        length, kind = struct.unpack(">I4s", view[pos:pos + 8])
        yield kind, view[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length


def _chunk(kind: bytes, body) -> bytes:
    return struct.pack(">I", len(body)) + kind + bytes(body) + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _png(width: int, height: int, depth: int, colour: int, rows: bytes) -> Image.Image:
    """A PNG of ``rows`` (each already prefixed with its filter byte), opened by Pillow."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows, 0)) \
        + _chunk(b"IEND", b"")
    return Image.open(io.BytesIO(data))


def _with_filter_zero(rows: np.ndarray) -> bytes:
    out = np.zeros((rows.shape[0], rows.shape[1] + 1), np.uint8)
    out[:, 1:] = rows
    return out.tobytes()


class _Inflater:
    """The IDAT stream inflated on demand, ``n`` bytes at a time."""

    def __init__(self, idat: Iterator[memoryview]):
        self._idat, self._z, self._tail = idat, zlib.decompressobj(), b""

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            if not self._tail:
                self._tail = next(self._idat, None)
                if self._tail is None or self._z.eof:
                    raise OSError(f"truncated PNG data: {len(out)} of {n} bytes of the next rows")
            out += self._z.decompress(self._tail, n - len(out))
            self._tail = self._z.unconsumed_tail
        return bytes(out)


def decode_reduced(data: bytes, factor: int) -> Optional[tuple[Image.Image, Optional[bytes]]]:
    """The PNG in ``data`` as RGB reduced by ``factor`` (``Image.reduce``), and its EXIF block (``eXIf``
    chunk as Pillow stores it in ``info["exif"]``, or None); None when it cannot be streamed.
    A broken file raises OSError, as Pillow's own decoder does."""
    try:
        return _decode_reduced(data, factor)
    except (zlib.error, struct.error) as e:
        raise OSError(f"broken PNG data: {e}") from None


def _decode_reduced(data: bytes, factor: int) -> Optional[tuple[Image.Image, Optional[bytes]]]:
    head = Image.open(io.BytesIO(data))  # the mode and rawmode Pillow decodes this file with
    if head.format != "PNG" or len(head.tile) != 1 or head.tile[0][0] != "zip":
        return None
    rawmode = head.tile[0][3]
    header, palette, exif, idat = None, None, None, []
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"PLTE":
            palette = bytes(body)
        elif kind == b"eXIf":
            exif = b"Exif\x00\x00" + bytes(body)
        elif kind == b"IDAT":
            idat.append(body)
    width, height, depth, colour, _, _, interlace = header
    if interlace or colour not in CHANNELS or (width, height) != head.size:
        return None
    bits = CHANNELS[colour] * depth
    bpp = max(1, bits // 8)
    if bpp not in SAME_BYTES:
        return None
    row_bytes = (width * bits + 7) // 8
    rows_per_band = max(factor, BAND_BYTES // max(1, row_bytes) // factor * factor)
    inflate = _Inflater(iter(idat))
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    previous = np.zeros((0, row_bytes), np.uint8)  # the last unfiltered row so far
    for top in range(0, height, rows_per_band):
        n = min(rows_per_band, height - top)
        rows = _with_filter_zero(previous) + inflate.read(n * (row_bytes + 1))
        unfiltered = _png(row_bytes // bpp, len(previous) + n, 8, SAME_BYTES[bpp], rows).tobytes()
        raw = np.frombuffer(unfiltered, np.uint8).reshape(-1, row_bytes)[len(previous):]
        previous = raw[-1:]
        band = Image.frombuffer(head.mode, (width, n), raw, "raw", rawmode, 0, 1)
        if palette is not None and band.mode == "P":
            band.putpalette(palette, "RGB")
        band = band if band.mode == "RGB" else band.convert("RGB")
        out.paste(band.reduce(factor), (0, top // factor))
    return out, exif
