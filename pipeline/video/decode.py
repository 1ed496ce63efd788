"""A video file -> its frames, bounded like photos (``pipeline.images``): PyAV decodes, and every video is held
to ``VideoLimits``:

* ``max_bytes``: a bigger file is refused before it is opened;
* ``max_pixels``: a stream whose frames are bigger is refused before a frame is decoded (the decoder holds
  full-size frames: an 8K stream costs 33 MP per reference frame);
* ``max_frames``: a stream whose header says more frames is refused; one whose header lies stops with an
  error at the first frame past the budget;
* ``frame_pixels``: each frame is handed over at a working resolution of at most this many pixels, scaled
  by the decoder (swscale) by a whole factor, so boxes map back exactly (``Photo.scale``);
* ``seconds``: a total deadline for decoding (and whatever the caller does between frames), also cut to
  the request's (``pipeline.deadline``).

A file that is not a video, has no video stream, or breaks while decoding raises ``VideoLoadError`` whose
message names the file and the reason. Memory per video: the decoder's reference frames (a few full-size
frames) plus the frame being handed over; the video itself is never held."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional, Union

import av
import numpy as np

from pipeline import deadline, settings
from pipeline.images import Photo


class VideoLoadError(ValueError):
    """A video that cannot be used; the message says which and why (for logs, run records, responses)."""


def _default(name: str):
    return settings.Video.model_fields[name].default


@dataclass(frozen=True)
class VideoLimits:
    """The limits of one video; the defaults are the VIDEO_* settings' (``pipeline.settings.Video``)."""
    max_bytes: int = _default("max_bytes")  # the file
    max_pixels: int = _default("max_pixels")  # one frame of the stream (4K UHD)
    max_frames: int = _default("max_frames")  # an hour at 30 fps
    frame_pixels: int = _default("frame_pixels")  # the working resolution handed over
    seconds: Optional[float] = _default("seconds")  # decoding one video, start to end (None: no limit)

    @classmethod
    def from_env(cls, **overrides) -> "VideoLimits":
        """The VIDEO_* settings now, then ``overrides`` (None values ignored); a bad value is a
        ``VideoLoadError`` naming the variable."""
        try:
            s = settings.Video.read()
        except settings.SettingsError as e:
            raise VideoLoadError(str(e)) from None
        values = {"max_bytes": s.max_bytes, "max_pixels": s.max_pixels, "max_frames": s.max_frames,
                  "frame_pixels": s.frame_pixels, "seconds": s.seconds_limit}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream."""
    width: int
    height: int
    fps: float
    frames: int  # as the header says, else duration x fps (rounded)
    duration: float  # seconds
    codec: str

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "fps": round(self.fps, 6), "frames": self.frames,
                "duration": round(self.duration, 6), "codec": self.codec}


@dataclass
class Frame:
    """One decoded frame, valid until the next one is decoded: its pixels are converted only when asked for
    (``photo()``), at the working resolution."""
    index: int  # 0-based, in presentation order
    time: float  # seconds from the start of the stream
    small: Optional[np.ndarray] = field(default=None, repr=False)  # (h, w, 3) BGR thumbnail, when asked for
    _frame: object = field(default=None, repr=False)
    _size: tuple = (0, 0)  # the working size
    _original: tuple = (0, 0)
    _scale: int = 1
    _photo: Optional[Photo] = field(default=None, repr=False)

    def photo(self) -> Photo:
        """The frame as a ``Photo``: pixels at the working resolution, the stream's size as its own."""
        if self._photo is None:
            frame = self._frame
            same = (frame.width, frame.height) == self._size
            im = frame.to_image() if same else frame.to_image(width=self._size[0], height=self._size[1])
            self._photo = Photo(im, *self._original, scale=self._scale)
        return self._photo


def _name(path) -> str:
    return Path(path).name if isinstance(path, (str, Path)) else "<video>"


def _open(path: Union[str, Path], limits: VideoLimits):
    name = _name(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise VideoLoadError(f"{name}: cannot read file: {e.strerror or e}") from None
    if size == 0:
        raise VideoLoadError(f"{name}: empty file (0 bytes)")
    if size > limits.max_bytes:
        raise VideoLoadError(f"{name}: {size:,} bytes exceeds the limit of {limits.max_bytes:,} (VIDEO_MAX_BYTES)")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoLoadError(f"{name}: not a video (unrecognised or corrupt container): {e}") from None
    if not container.streams.video:
        container.close()
        raise VideoLoadError(f"{name}: no video stream in the file")
    return container


def _info(container, name: str) -> VideoInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise VideoLoadError(f"{name}: the video stream has no frame size (unsupported or corrupt)")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not (fps > 0 and math.isfinite(fps)):
        raise VideoLoadError(f"{name}: the video stream has no frame rate")
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = (stream.frames or 0) / fps
    frames = int(stream.frames or 0) or int(round(duration * fps))
    if not duration and frames:
        duration = frames / fps
    return VideoInfo(width, height, fps, frames, duration, ctx.name or "?")


def probe(path: Union[str, Path], limits: Optional[VideoLimits] = None) -> VideoInfo:
    """The video's size, frame rate, frame count and duration (``VideoLoadError`` when it is not a usable
    video or is over ``limits``)."""
    limits = limits or VideoLimits()
    container = _open(path, limits)
    try:
        info = _info(container, _name(path))
        _check(info, limits, _name(path))
        return info
    finally:
        container.close()


def _check(info: VideoInfo, limits: VideoLimits, name: str) -> None:
    if info.width * info.height > limits.max_pixels:
        raise VideoLoadError(f"{name}: {info.width}x{info.height} = {info.width * info.height:,} pixels per frame "
                             f"exceeds the limit of {limits.max_pixels:,} (VIDEO_MAX_PIXELS)")
    if info.frames > limits.max_frames:
        raise VideoLoadError(f"{name}: {info.frames:,} frames ({info.duration:.0f} s at {info.fps:g} fps) exceeds "
                             f"the limit of {limits.max_frames:,} frames (VIDEO_MAX_FRAMES)")


def reduction(width: int, height: int, working_pixels: Optional[int]) -> int:
    """The least whole factor that brings ``width`` x ``height`` to at most ``working_pixels``."""
    if not working_pixels:
        return 1
    f = 1
    while math.ceil(width / f) * math.ceil(height / f) > working_pixels:
        f += 1
    return f


def small_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size of a thumbnail whose longest side is ``side`` (even numbers, for the scaler)."""
    k = side / max(width, height)
    return max(2, int(round(width * k / 2)) * 2), max(2, int(round(height * k / 2)) * 2)


class Video:
    """One opened video: ``info`` and ``frames()``. Use as a context manager (the file is closed at the end)."""

    def __init__(self, path: Union[str, Path], limits: Optional[VideoLimits] = None):
        self.path = path
        self.name = _name(path)
        self.limits = limits or VideoLimits()
        self._container = _open(path, self.limits)
        try:
            self.info = _info(self._container, self.name)
            _check(self.info, self.limits, self.name)
        except Exception:
            self._container.close()
            raise
        self.scale = reduction(self.info.width, self.info.height, self.limits.frame_pixels)
        self.decoded = 0  # frames decoded so far

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(self, small_side: Optional[int] = None) -> Iterator[Frame]:
        """Every frame in order (its pixels converted on ``Frame.photo()``), with a BGR thumbnail of
        ``small_side`` px (for scene cuts) when asked for. Each frame costs its decoding; only the frames
        whose pixels are asked for cost a conversion."""
        info, limits, name = self.info, self.limits, self.name
        f = self.scale
        size = (max(1, round(info.width / f)), max(1, round(info.height / f)))
        thumb = small_size(info.width, info.height, small_side) if small_side else None
        started = time.monotonic()
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for frame in self._container.decode(stream):
                index += 1
                self.decoded = index + 1
                if index >= limits.max_frames:
                    raise VideoLoadError(f"{name}: more than {limits.max_frames:,} frames (VIDEO_MAX_FRAMES; the "
                                         f"header said {info.frames:,})")
                self._check_time(started, index)
                if frame.width * frame.height > limits.max_pixels:
                    raise VideoLoadError(f"{name}: frame {index} is {frame.width}x{frame.height}, over the "
                                         f"limit of {limits.max_pixels:,} pixels (VIDEO_MAX_PIXELS)")
                t = float(frame.time) if frame.time is not None else index / info.fps
                small = frame.to_ndarray(format="bgr24", width=thumb[0], height=thumb[1]) if thumb else None
                yield Frame(index, t, small, frame, size, (info.width, info.height), f)
        except av.FFmpegError as e:
            raise VideoLoadError(f"{name}: corrupt or unsupported stream at frame {index + 1}: {e}") from None

    def _check_time(self, started: float, index: int) -> None:
        limit = self.limits.seconds
        if limit is not None and time.monotonic() - started > limit:
            raise VideoLoadError(f"{self.name}: not done within VIDEO_SECONDS={limit:g} s (stopped at frame "
                                 f"{index:,} of {self.info.frames:,})")
        if deadline.expired():
            raise deadline.DeadlineExceeded(f"{deadline.current().describe()} ran out at frame {index:,} of "
                                            f"{self.info.frames:,} of {self.name}")


def fps_fraction(fps: float) -> Fraction:
    """A frame rate as the exact fraction an encoder wants (29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)
