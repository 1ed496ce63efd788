"""Generated videos whose truth is known: scenes in motion (objects on straight paths that bounce off the
edges), an occluder that hides them for a while, and hard cuts to a new scene with new objects; and the
detector of that world (``ColourGrounder``: each label is a flat colour, found by thresholding).

``World`` draws frame ``i`` and says which object is where in it (``truth(i)``: every object at least
half visible, with its full box and its id); ``write`` encodes it with PyAV. Tests and benchmarks measure
decoding, sampling, scene cuts and tracking against this truth; a random-weight model would measure
nothing."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import av
import cv2
import numpy as np

from pipeline.detections import Detections
from pipeline.providers.base import Grounder
from pipeline.video.decode import fps_fraction

COLOURS = {"ball": (220, 30, 30), "crate": (30, 70, 220), "kite": (240, 200, 20)}
OCCLUDER = (128, 128, 128)


@dataclass
class Mover:
    id: int
    label: str
    w: float
    h: float
    x: float  # top-left at the scene's first frame
    y: float
    vx: float  # pixels per frame
    vy: float

    def box(self, t: int, width: int, height: int) -> np.ndarray:
        """xyxy ``t`` frames into the scene (a path that bounces off the frame's edges)."""
        return _box(self, t, width, height)


def _bounce(p: float, span: float) -> float:
    if span <= 0:
        return 0.0
    p = p % (2 * span)
    return p if p <= span else 2 * span - p


def _box(m: Mover, t: int, width: int, height: int) -> np.ndarray:
    x = _bounce(m.x + m.vx * t, width - m.w)
    y = _bounce(m.y + m.vy * t, height - m.h)
    return np.array([x, y, x + m.w, y + m.h])


@dataclass
class Scene:
    start: int  # first frame
    end: int  # one past the last
    background: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    movers: list[Mover] = field(default_factory=list)
    occluder: Optional[tuple[int, int, int, int]] = None  # xyxy of a grey bar in front of everything


@dataclass
class World:
    width: int
    height: int
    fps: float
    frames: int
    scenes: list[Scene]

    def scene(self, i: int) -> Scene:
        return next(s for s in self.scenes if s.start <= i < s.end)

    @property
    def cuts(self) -> list[int]:
        """First frames of every scene after the first."""
        return [s.start for s in self.scenes[1:]]

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as (H, W, 3) RGB."""
        s = self.scene(i)
        img = s.background.copy()
        for m in s.movers:
            x1, y1, x2, y2 = np.round(_box(m, i - s.start, self.width, self.height)).astype(int)
            colour = COLOURS[m.label]
            if m.label == "ball":
                yy, xx = np.ogrid[y1:y2, x1:x2]
                cy, cx, r = (y1 + y2 - 1) / 2, (x1 + x2 - 1) / 2, (x2 - x1) / 2
                img[y1:y2, x1:x2][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
            else:
                img[y1:y2, x1:x2] = colour
        if s.occluder is not None:
            x1, y1, x2, y2 = s.occluder
            img[y1:y2, x1:x2] = OCCLUDER
        return img

    def truth(self, i: int, min_visible: float = 0.5) -> Detections:
        """The objects at least ``min_visible`` visible in frame ``i``: full boxes, labels, ``extra["object"]``
        their ids (unique across the video)."""
        s = self.scene(i)
        boxes, labels, ids = [], [], []
        for m in s.movers:
            b = _box(m, i - s.start, self.width, self.height)
            if _visible(b, s.occluder) >= min_visible:
                boxes.append(b)
                labels.append(m.label)
                ids.append(m.id)
        return Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), scores=np.ones(len(boxes)),
                          labels=labels, extra={"object": np.array(ids, int)})

    def tracks(self) -> Detections:
        """Every frame's ``truth`` in one Detections, ``extra["frame"]`` the frame of each box: what
        ``evaluate.tracking`` compares a video's predicted tracks with."""
        parts = []
        for f in range(self.frames):
            d = self.truth(f)
            parts.append(Detections(xyxy=d.xyxy, scores=d.scores, labels=d.labels,
                                    extra={"object": d.extra["object"], "frame": np.full(len(d), f)}))
        return Detections.merge(parts)


def _visible(box: np.ndarray, occluder) -> float:
    if occluder is None:
        return 1.0
    ox1, oy1, ox2, oy2 = occluder
    iw = max(0.0, min(box[2], ox2) - max(box[0], ox1))
    ih = max(0.0, min(box[3], oy2) - max(box[1], oy1))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return 1.0 - iw * ih / area if area > 0 else 0.0


def world(width: int = 320, height: int = 240, fps: float = 30.0, seconds: float = 4.0, seed: int = 0,
          scenes: int = 2, objects: int = 3, labels: Sequence[str] = ("ball", "crate"), occluder: bool = True,
          speed: float = 0.01) -> World:
    """A video of ``scenes`` scenes of equal length, each with ``objects`` movers of ``labels`` (sizes ~1/8 of
    the frame, ``speed`` x the frame's diagonal per frame) and, with ``occluder``, a grey bar a fifth of the
    width across the middle that hides whoever passes behind it."""
    rng = np.random.default_rng(seed)
    frames = max(1, int(round(seconds * fps)))
    bounds = np.linspace(0, frames, scenes + 1).round().astype(int)
    diag = float(np.hypot(width, height))
    out, next_id = [], 1
    for k in range(scenes):
        base = rng.integers(40, 200, 3)
        noise = rng.integers(-12, 13, (height // 8 + 1, width // 8 + 1, 3))
        texture = np.kron(noise, np.ones((8, 8, 1)))[:height, :width]
        background = np.clip(base + texture, 0, 255).astype(np.uint8)
        movers = []
        for _ in range(objects):
            side = float(rng.uniform(0.10, 0.16) * min(width, height) * 1.4)
            angle = rng.uniform(0, 2 * np.pi)
            v = speed * diag * rng.uniform(0.6, 1.4)
            movers.append(Mover(next_id, str(labels[(next_id - 1) % len(labels)]), side, side,
                                float(rng.uniform(0, width - side)), float(rng.uniform(0, height - side)),
                                float(v * np.cos(angle)), float(v * np.sin(angle))))
            next_id += 1
        bar = None
        if occluder:
            bw = width // 5
            x1 = int(rng.integers(width // 3, 2 * width // 3 - bw // 2))
            bar = (x1, 0, x1 + bw, height)
        out.append(Scene(int(bounds[k]), int(bounds[k + 1]), background, movers, bar))
    return World(width, height, fps, frames, out)


def write(w: World, path: Path, codec: str = "libx264", options: Optional[dict] = None,
          frames: Optional[int] = None) -> Path:
    """Encode ``w`` (its first ``frames`` frames) to ``path`` (the container from the suffix: .mp4, .webm)."""
    path = Path(path)
    opts = options if options is not None else ({"preset": "ultrafast", "crf": "23"} if codec == "libx264" else {})
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps_fraction(w.fps), options=opts)
        stream.width, stream.height, stream.pix_fmt = w.width, w.height, "yuv420p"
        for i in range(frames if frames is not None else w.frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(w.frame(i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class ColourGrounder(Grounder):
    """The detector of the generated world: a query naming a label of ``COLOURS`` finds the blobs of its
    colour (OpenCV connected components), one box each, scored by how solid the blob is. Objects cut in two
    by the occluder come out as two boxes, as a real detector's would."""
    name = "colour-grounder"

    def __init__(self, tolerance: int = 60, min_area: int = 30):
        self.tolerance = tolerance
        self.min_area = min_area
        self.calls = 0

    def boxes(self, image, queries: Sequence[str]) -> Detections:
        self.calls += 1
        a = np.asarray(image.convert("RGB"), np.int16)
        boxes, scores, qs = [], [], []
        for q in queries:
            label = next((lab for lab in COLOURS if lab in str(q).lower()), None)
            if label is None:
                continue
            hit = (np.abs(a - np.array(COLOURS[label], np.int16)).sum(axis=2) < self.tolerance).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(hit, connectivity=8)
            for k in range(1, n):
                x, y, w, h, area = stats[k]
                if area < self.min_area:
                    continue
                boxes.append([x, y, x + w, y + h])
                scores.append(min(1.0, 0.5 + 0.5 * area / max(1, w * h)))
                qs.append(q)
        return Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), scores=scores, labels=qs, queries=qs)
