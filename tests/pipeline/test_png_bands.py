"""PNG decoded a band of rows at a time (pipeline/png_bands.py): pixel for pixel what decoding the whole file
and reducing it gives, for every colour type, bit depth and row filter, with the memory of a band instead
of the full-size image."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline import png_bands
from pipeline.images import ImageLoadError, open_image, open_photo

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def png_every_filter(raw: np.ndarray, width: int, colour: int, depth: int, interlace: int = 0,
                     extra: bytes = b"") -> bytes:
    """A PNG of the unfiltered rows ``raw`` (h, row_bytes) whose row i uses filter i % 5 (None, Sub, Up,
    Average, Paeth), encoded here so that all five occur (Pillow's encoder picks one per image)."""
    bpp = max(1, CHANNELS[colour] * depth // 8)
    x = raw.astype(np.int16)
    left = np.pad(x, ((0, 0), (bpp, 0)))[:, :-bpp]
    up = np.pad(x, ((1, 0), (0, 0)))[:-1]
    up_left = np.pad(up, ((0, 0), (bpp, 0)))[:, :-bpp]
    predictions = [0, left, up, (left + up) // 2, _paeth(left, up, up_left)]
    rows = [bytes([i % 5]) + ((x[i] - np.broadcast_to(predictions[i % 5], x.shape)[i]) % 256).astype(np.uint8)
            .tobytes() for i in range(len(x))]
    ihdr = struct.pack(">IIBBBBB", width, len(raw), depth, colour, 0, 0, interlace)
    return (png_bands.SIGNATURE + _chunk(b"IHDR", ihdr) + extra
            + _chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + _chunk(b"IEND", b""))


def random_png(width: int, height: int, colour: int, depth: int, seed: int = 0, **kw) -> bytes:
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (height, (width * CHANNELS[colour] * depth + 7) // 8), dtype=np.uint8)
    extra = b""
    if colour == 3:
        extra = _chunk(b"PLTE", rng.integers(0, 256, 3 * 2 ** depth, dtype=np.uint8).tobytes())
        extra += _chunk(b"tRNS", b"\x00\x80")
    return png_every_filter(raw, width, colour, depth, extra=extra, **kw)


def whole_then_reduced(data: bytes, factor: int) -> np.ndarray:
    return np.asarray(open_image(data).reduce(factor))


STREAMED = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (3, 1), (3, 2), (3, 4), (3, 8), (4, 8), (4, 16),
            (6, 8)]


@pytest.mark.parametrize("colour,depth", STREAMED)
@pytest.mark.parametrize("factor", [2, 3, 8])
def test_banded_decode_is_the_whole_decode_reduced(colour, depth, factor, monkeypatch):
    """Odd sizes, every filter type, bands far smaller than the image (a few rows each)."""
    monkeypatch.setattr(png_bands, "BAND_BYTES", 700)
    data = random_png(203, 97, colour, depth)
    got, exif = png_bands.decode_reduced(data, factor)
    assert exif is None and got.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(got), whole_then_reduced(data, factor))


@pytest.mark.parametrize("colour,depth", [(2, 16), (6, 16)])
def test_16_bit_colour_is_not_streamed_and_refused_above_the_working_resolution(colour, depth):
    """6 or 8 bytes per pixel match no 8-bit colour type: None here; open_photo decodes such a file whole up
    to the working resolution and refuses it above, with the reason."""
    data = random_png(64, 40, colour, depth)
    assert png_bands.decode_reduced(data, 2) is None
    with pytest.raises(ImageLoadError, match=r"64x40 PNG image above the working resolution .*budgets\.decode_pixels"):
        open_photo(data, working_pixels=1_000)
    np.testing.assert_array_equal(np.asarray(open_photo(data, working_pixels=2_560).pixels),
                                  np.asarray(open_image(data)))


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "BMP", "GIF"])
def test_formats_decoded_whole_are_refused_above_the_working_resolution(fmt):
    """Pillow decodes these whole (a 79 MP WebP holds ~1.2 GB on the way): above the working resolution the
    image is refused with the reason and the setting; at it, it is decoded."""
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(buf, fmt)
    with pytest.raises(ImageLoadError, match=f"300x200 {fmt} image above the working resolution.*convert it to "
                                             "JPEG or PNG, or raise budgets.decode_pixels"):
        open_photo(buf.getvalue(), working_pixels=59_999)
    assert open_photo(buf.getvalue(), working_pixels=60_000).pixels.size == (300, 200)


def test_a_camera_mpo_is_decoded_reduced_like_a_jpeg():
    """MPO (JPEG with a second picture, from some cameras) is a JPEG to libjpeg: decoded at 1/2, not refused."""
    buf = io.BytesIO()
    a, b = Image.new("RGB", (800, 600), (200, 30, 30)), Image.new("RGB", (800, 600), (30, 30, 200))
    a.save(buf, "MPO", save_all=True, append_images=[b])
    photo = open_photo(buf.getvalue(), working_pixels=200_000)
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    assert (photo.size, photo.pixels.size, photo.scale) == ((800, 600), (400, 300), 2)


def test_interlaced_is_left_to_the_whole_decode():
    """Adam7 stores passes, not rows: decode_reduced steps aside on the IHDR flag before reading any data."""
    assert png_bands.decode_reduced(random_png(64, 40, 2, 8, interlace=1), 2) is None


def test_open_photo_streams_a_png_and_keeps_its_exif_orientation():
    """Through open_photo: the orientation from the eXIf chunk is applied after the banded decode and the
    original's size is the viewed one."""
    a = np.zeros((400, 600, 3), np.uint8)
    a[100:200, 400:560] = (220, 20, 20)  # a red box, stored rotated; viewed after EXIF orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", exif=exif)
    photo = open_photo(buf.getvalue(), working_pixels=15_000)
    assert photo.size == (400, 600) and photo.scale == 4 and photo.pixels.size == (100, 150)
    np.testing.assert_array_equal(np.asarray(photo.pixels),
                                  np.asarray(open_image(buf.getvalue()).reduce(4)))


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_broken_png_fails_with_a_reason(damage):
    data = random_png(300, 200, 2, 8)
    idat = data.index(b"IDAT")
    broken = data[:idat + 400] if damage == "truncated" else \
        data[:idat + 200] + bytes(200) + data[idat + 400:]
    with pytest.raises(ImageLoadError, match="corrupt or truncated image"):
        open_photo(broken, working_pixels=10_000)


CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from pipeline.images import open_photo

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    data = Path(sys.argv[1]).read_bytes()
    open_photo(data[:0] or Path(sys.argv[2]).read_bytes(), 1_000_000)  # warm up the decoders
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    base = status("VmRSS")
    photo = open_photo(data, int(sys.argv[3]))
    print(json.dumps({"growth": status("VmHWM") - base, "size": photo.size, "working": photo.pixels.size}))
""")


def test_decoding_a_big_png_holds_about_its_reduced_copy(tmp_path):
    """A 24 MP RGBA PNG decoded at 6 MP in a fresh process: the peak RSS growth is about the 6 MP working
    image, not the full-size RGBA and RGB copies (~190 MB) that decoding it whole makes."""
    w, h = 6000, 4000
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x % 256, y % 256, (x + y) % 256, np.full_like(x, 200)], -1).astype(np.uint8)
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.fromarray(a, "RGBA").save(big, compress_level=1)
    Image.fromarray(a[:400, :600], "RGBA").save(small, compress_level=1)
    del a, x, y
    out = subprocess.run([sys.executable, "-c", CHILD, str(big), str(small), str(6_000_000)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["size"] == [w, h] and got["working"] == [3000, 2000]
    working = 4 * 3000 * 2000  # Pillow keeps RGB at 4 bytes per pixel
    print(f"\npeak RSS growth decoding a {w}x{h} RGBA PNG at 1/2: {got['growth'] / 2**20:.0f} MiB")
    assert got["growth"] < working + 24 * 2**20
