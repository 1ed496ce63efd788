"""A track's boxes -> the keyframes that describe it, and keyframes -> a box per frame (linear interpolation
between the keyframes of a span, as Label Studio's video editor does).

A track is seen on detection frames only. Its boxes fall into spans: a span ends where the track went
unseen on more than ``max_gap`` frames (it was occluded, or lost) and at its last box. Within a span,
``keyframes`` keeps the fewest boxes whose interpolation stays within ``tolerance`` pixels of every box
seen (Ramer-Douglas-Peucker over time, each box's four sides at once), the span's first and last always."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Keyframe:
    frame: int  # 0-based frame index
    xyxy: tuple[float, float, float, float]
    enabled: bool  # False: the track is not shown after this frame until its next keyframe


def spans(frames: Sequence[int], max_gap: int) -> list[tuple[int, int]]:
    """(first, last) positions in ``frames`` (sorted) of each run whose steps are at most ``max_gap``."""
    out, start = [], 0
    for i in range(1, len(frames)):
        if frames[i] - frames[i - 1] > max_gap:
            out.append((start, i - 1))
            start = i
    if len(frames):
        out.append((start, len(frames) - 1))
    return out


def _simplify(frames: np.ndarray, boxes: np.ndarray, tolerance: float) -> list[int]:
    keep = {0, len(frames) - 1}
    stack = [(0, len(frames) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        t = (frames[a + 1:b] - frames[a]) / max(1, frames[b] - frames[a])
        guess = boxes[a] + t[:, None] * (boxes[b] - boxes[a])
        err = np.abs(guess - boxes[a + 1:b]).max(axis=1)
        worst = int(np.argmax(err))
        if err[worst] > tolerance:
            m = a + 1 + worst
            keep.add(m)
            stack += [(a, m), (m, b)]
    return sorted(keep)


def keyframes(frames: Sequence[int], boxes, max_gap: int, tolerance: float = 2.0) -> list[Keyframe]:
    """The keyframes of one track seen at ``frames`` (sorted, 0-based) with ``boxes`` (xyxy pixels)."""
    frames = np.asarray(frames, int)
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    out: list[Keyframe] = []
    for a, b in spans(frames.tolist(), max_gap):
        kept = [a + k for k in _simplify(frames[a:b + 1], boxes[a:b + 1], tolerance)]
        out += [Keyframe(int(frames[k]), tuple(float(v) for v in boxes[k]), k != b) for k in kept]
    return out


def interpolate(keys: Sequence[Keyframe], frames_count: int) -> dict[int, np.ndarray]:
    """Frame index -> box for every frame the keyframes cover: between an enabled keyframe and the next one
    linearly, a disabled keyframe on its own frame only; after the last keyframe nothing when it is
    disabled, else its box up to ``frames_count`` (Label Studio keeps an open track to the video's end)."""
    keys = sorted(keys, key=lambda k: k.frame)
    out: dict[int, np.ndarray] = {}
    for i, k in enumerate(keys):
        box = np.asarray(k.xyxy, float)
        out[k.frame] = box
        if not k.enabled:
            continue
        if i + 1 < len(keys):
            nxt = keys[i + 1]
            other = np.asarray(nxt.xyxy, float)
            for f in range(k.frame + 1, nxt.frame):
                out[f] = box + (f - k.frame) / (nxt.frame - k.frame) * (other - box)
        else:
            for f in range(k.frame + 1, frames_count):
                out[f] = box
    return out
