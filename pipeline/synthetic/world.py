"""Seeded photo-like scenes with exact ground truth: ``World(seed).scene(i)``.

A scene is a sky-and-ground background with smooth colour noise and fine texture, clutter (buildings,
bushes, poles, wires), 0..``max_objects`` objects of the classes in ``shapes.CLASSES`` and a few look-alikes
(``shapes.DISTRACTORS``, never labelled), some objects partly hidden behind branches, leaves or boards, then
light (gain, colour cast, a gradient across the picture, vignette), optional blur and sensor noise.

Each object's box covers about 1 % to 40 % of the image area (log-uniform), so at 1280x960 its sides run
from ~110 to ~700 px; signs are tilted up to 25 degrees and squashed as if seen at an angle, drones turn
freely. ``empty_share`` of the scenes have no object at all (look-alikes and clutter still appear).

Truth is exact: every layer is drawn without anti-aliasing into an owner map (which object each pixel shows),
so an object's box is the extent of the pixels it shows in the final picture before blur and noise
(x2/y2 one past the last column/row, the way a box covers pixels). Occlusion never leaves less than
``min_visible`` of an object. Scene ``i`` of seed ``s`` depends on (s, i) only, never on other scenes;
``scene(i, omit=k)`` draws the same scene without object ``k``'s pixels (everything else identical)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.detections import Detections
from pipeline.synthetic import shapes


@dataclass(frozen=True)
class WorldConfig:
    size: tuple[int, int] = (1280, 960)
    classes: tuple[str, ...] = tuple(shapes.CLASSES)
    empty_share: float = 0.15  # scenes with no object
    max_objects: int = 4
    area: tuple[float, float] = (0.01, 0.40)  # an object's box area, share of the image (log-uniform)
    distractors: float = 1.0  # mean look-alikes per scene (Poisson)
    clutter: tuple[int, int] = (6, 20)
    occlusion_share: float = 0.35  # objects given an occluder
    min_visible: float = 0.5
    blur_share: float = 0.3
    blur_sigma: tuple[float, float] = (0.6, 2.5)
    noise_sigma: tuple[float, float] = (2.0, 8.0)
    gain: tuple[float, float] = (0.55, 1.3)


@dataclass
class Scene:
    index: int
    image: Image.Image
    boxes: np.ndarray  # (N, 4) float32 pixel xyxy of each object's visible pixels
    labels: list[str]
    visible: list[float]  # share of each object's pixels left visible by occlusion
    meta: dict = field(default_factory=dict)  # light, blur, noise; ``lookalikes``: [{kind, box}] (never labelled)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def truth(self) -> Detections:
        return Detections(xyxy=self.boxes, scores=[math.nan] * len(self.labels), labels=list(self.labels))


@dataclass
class _Piece:
    rgb: np.ndarray
    mask: np.ndarray
    x: int
    y: int
    owner: int  # > 0: object id; -1: occluder or look-alike


class World:
    """The scenes of one seed. ``config`` changes what the world holds (see ``WorldConfig``)."""

    def __init__(self, seed: int = 0, config: Optional[WorldConfig] = None, **overrides):
        self.seed = int(seed)
        self.config = replace(config or WorldConfig(), **overrides)
        unknown = set(self.config.classes) - set(shapes.CLASSES)
        if unknown:
            raise ValueError(f"unknown classes {sorted(unknown)}; the world has {list(shapes.CLASSES)}")

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    def scene(self, index: int, omit: Optional[int] = None) -> Scene:
        cfg = self.config
        rng = np.random.default_rng([self.seed, int(index)])
        w, h = cfg.size
        bg = _background(rng, w, h, cfg.clutter)
        owner = np.zeros((h, w), np.int16)
        pieces: list[_Piece] = []
        labels: list[str] = []
        areas: list[int] = []
        n = 0 if rng.random() < cfg.empty_share else int(rng.choice(np.arange(1, cfg.max_objects + 1),
                                                                     p=_count_weights(cfg.max_objects)))
        covered = 0.0
        for _ in range(n):
            label = cfg.classes[int(rng.integers(len(cfg.classes)))]
            share = math.exp(rng.uniform(*np.log(cfg.area)))
            if covered + share > 0.7:
                continue
            piece = _place(rng, owner, label, share, w, h, len(labels) + 1, cfg.min_visible, areas)
            if piece is None:
                continue
            if label in shapes.SIGNS:
                pole = _pole(rng, piece, w, h)
                if pole is not None and _keeps_visible(owner, pole, areas, cfg.min_visible):
                    _stamp(owner, pole)
                    pieces.append(pole)
            _stamp(owner, piece)
            pieces.append(piece)
            labels.append(label)
            areas.append(int(piece.mask.sum()))
            covered += share
        lookalikes = []
        for _ in range(int(rng.poisson(cfg.distractors))):
            kind = list(shapes.DISTRACTORS)[int(rng.integers(len(shapes.DISTRACTORS)))]
            piece = _place(rng, owner, kind, math.exp(rng.uniform(*np.log(cfg.area))), w, h, -1, cfg.min_visible,
                           areas)
            if piece is not None:
                _stamp(owner, piece)
                pieces.append(piece)
                ys, xs = np.nonzero(piece.mask)
                lookalikes.append({"kind": kind, "box": [int(piece.x + xs.min()), int(piece.y + ys.min()),
                                                         int(piece.x + xs.max() + 1), int(piece.y + ys.max() + 1)]})
        for k in range(1, len(labels) + 1):
            if rng.random() < cfg.occlusion_share:
                occ = _occluder(rng, owner, k, w, h, cfg.min_visible, areas)
                if occ is not None:
                    _stamp(owner, occ)
                    pieces.append(occ)
        canvas = np.asarray(bg, np.float32).copy()
        for p in pieces:
            if omit is not None and p.owner == omit:
                continue
            region = canvas[p.y:p.y + p.mask.shape[0], p.x:p.x + p.mask.shape[1]]
            region[p.mask] = p.rgb[p.mask]
        image, meta = _photograph(rng, canvas, cfg)
        boxes, visible = [], []
        for k in range(1, len(labels) + 1):
            ys, xs = np.nonzero(owner == k)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            visible.append(len(xs) / areas[k - 1])
        meta.update(objects=len(labels), pieces=len(pieces), lookalikes=lookalikes)
        return Scene(int(index), image, np.asarray(boxes, np.float32).reshape(-1, 4), labels, visible, meta)


def _count_weights(k: int) -> np.ndarray:
    wts = np.array([1.0 / (i + 1) for i in range(k)])
    return wts / wts.sum()


def _stamp(owner: np.ndarray, p: _Piece) -> None:
    region = owner[p.y:p.y + p.mask.shape[0], p.x:p.x + p.mask.shape[1]]
    region[p.mask] = p.owner


def _keeps_visible(owner: np.ndarray, p: _Piece, areas: list[int], min_visible: float) -> bool:
    """Whether every object keeps at least ``min_visible`` of its pixels once ``p`` is drawn over them."""
    region = owner[p.y:p.y + p.mask.shape[0], p.x:p.x + p.mask.shape[1]]
    hit = region[p.mask]
    for k in np.unique(hit[hit > 0]):
        left = int((owner == k).sum()) - int((hit == k).sum())
        if left < min_visible * areas[int(k) - 1] or left <= 0:
            return False
    return True


def _place(rng, owner, kind: str, share: float, w: int, h: int, owner_id: int, min_visible: float,
           areas: list[int], tries: int = 12) -> Optional[_Piece]:
    """A rendered object or look-alike at a random spot inside the image that leaves every object placed
    so far at least ``min_visible`` visible (None when no spot does after ``tries``)."""
    draw = shapes.CLASSES.get(kind) or shapes.DISTRACTORS[kind]
    layers = draw(rng)
    diameter = math.sqrt(share * w * h)
    if kind in shapes.SIGNS:
        angle, squash = math.radians(rng.uniform(-25, 25)), rng.uniform(0.65, 1.0)
    else:
        angle, squash = rng.uniform(0, 2 * math.pi), rng.uniform(0.8, 1.0)
    rgb, mask = shapes.render(layers, diameter, angle, squash, rng, texture=rng.uniform(0.02, 0.1))
    ph, pw = mask.shape
    if pw >= w or ph >= h:
        return None
    for _ in range(tries):
        p = _Piece(rgb, mask, int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph)), owner_id)
        if _keeps_visible(owner, p, areas, min_visible):
            return p
    return None


def _pole(rng, sign: _Piece, w: int, h: int) -> Optional[_Piece]:
    """A grey pole from the sign's centre down to the bottom of the picture (drawn before the sign)."""
    ph, pw = sign.mask.shape
    cx, top = sign.x + pw // 2, sign.y + ph // 2
    width = max(3, int(pw * rng.uniform(0.05, 0.09)))
    if top >= h - 1:
        return None
    x0 = max(0, cx - width // 2)
    mask = np.ones((h - top, min(width, w - x0)), bool)
    grey = np.array(shapes.jitter((130, 130, 128), rng, sat=0.0), np.float32)
    rgb = np.broadcast_to(grey, mask.shape + (3,)).copy()
    return _Piece(rgb, mask, x0, top, -1)


def _occluder(rng, owner, k: int, w: int, h: int, min_visible: float, areas: list[int]) -> Optional[_Piece]:
    """A branch, a leafy blob or a board partly in front of object ``k``."""
    ys, xs = np.nonzero(owner == k)
    x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    bw, bh = x2 - x1, y2 - y1
    for scale in (0.5, 0.35, 0.2):
        kind = rng.choice(["branch", "leaves", "board"])
        ow, oh = int(max(4, bw * scale * rng.uniform(0.6, 1.4))), int(max(4, bh * scale * rng.uniform(0.6, 1.4)))
        if kind == "branch":
            ow, oh = int(bw * rng.uniform(0.8, 1.4)) + 4, max(4, int(bh * scale * 0.3))
        ox = int(np.clip(rng.integers(x1 - ow // 2, x2 - ow // 2 + 1), 0, max(0, w - ow)))
        oy = int(np.clip(rng.integers(y1 - oh // 2, y2 - oh // 2 + 1), 0, max(0, h - oh)))
        ow, oh = min(ow, w - ox), min(oh, h - oy)
        im = Image.new("1", (ow, oh), 0)
        d = ImageDraw.Draw(im)
        if kind == "leaves":
            d.ellipse((0, 0, ow - 1, oh - 1), fill=1)
            colour = shapes.jitter((60, 110, 45), rng, hue=0.05)
        elif kind == "board":
            d.rectangle((0, 0, ow - 1, oh - 1), fill=1)
            colour = shapes.jitter((150, 110, 70), rng, hue=0.05)
        else:
            d.polygon([(0, 0), (ow - 1, int(oh * 0.3)), (ow - 1, oh - 1), (0, int(oh * 0.7))], fill=1)
            colour = shapes.jitter((90, 65, 40), rng, hue=0.05)
        mask = np.asarray(im, bool)
        rgb = np.broadcast_to(np.array(colour, np.float32), mask.shape + (3,)).copy()
        rgb *= (1 + 0.08 * rng.normal(0, 1, mask.shape))[..., None]
        piece = _Piece(np.clip(rgb, 0, 255), mask, ox, oy, -1)
        if _keeps_visible(owner, piece, areas, min_visible):
            return piece
    return None


def _smooth(rng, w: int, h: int, cells: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Noise in [-1, 1] with ``cells`` random values across the picture, bicubically interpolated."""
    small = rng.uniform(-1, 1, (cells[1], cells[0], channels)).astype(np.float32)
    planes = [np.asarray(Image.fromarray(small[..., c]).resize((w, h), Image.BICUBIC)) for c in range(channels)]
    return np.stack(planes, axis=-1)


def _background(rng, w: int, h: int, clutter: tuple[int, int]) -> Image.Image:
    horizon = int(h * rng.uniform(0.25, 0.7))
    sky = np.array(shapes.jitter(rng.choice([(150, 185, 225), (185, 190, 200), (215, 200, 170)]), rng), np.float32)
    ground = np.array(shapes.jitter(rng.choice([(95, 120, 70), (120, 118, 112), (140, 115, 85)]), rng, hue=0.05),
                      np.float32)
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    column = np.where(yy < horizon, sky * (0.85 + 0.3 * yy / max(horizon, 1)),
                      ground * (0.8 + 0.3 * (yy - horizon) / max(h - horizon, 1))).astype(np.float32)
    base = column * (1 + 0.12 * _smooth(rng, w, h, (8, 6)))
    base += 10 * _smooth(rng, w, h, (64, 48))
    base += 3 * rng.standard_normal((h, w, 3), dtype=np.float32)
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(*clutter))):
        kind = rng.choice(["building", "bush", "pole", "wire", "window"])
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == "building":
            bw, bh = int(rng.integers(w // 12, w // 3)), int(rng.integers(h // 10, h // 2))
            d.rectangle((x, horizon - bh, x + bw, horizon + 5),
                        fill=shapes.jitter(tuple(int(v) for v in rng.choice([(160, 150, 140), (110, 100, 95),
                                                                             (190, 180, 160)])), rng))
        elif kind == "bush":
            r = int(rng.integers(w // 40, w // 10))
            d.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=shapes.jitter((55, 100, 45), rng, hue=0.06))
        elif kind == "pole":
            d.rectangle((x, y, x + int(rng.integers(3, 12)), h), fill=shapes.jitter((120, 120, 118), rng, sat=0.0))
        elif kind == "wire":
            d.line((0, y, w, y + int(rng.integers(-h // 8, h // 8))), fill=(40, 40, 40), width=int(rng.integers(1, 4)))
        else:
            s = int(rng.integers(w // 60, w // 20))
            d.rectangle((x, y, x + s, y + int(s * 1.4)), fill=shapes.jitter((70, 80, 100), rng))
    return im


def _photograph(rng, canvas: np.ndarray, cfg: WorldConfig) -> tuple[Image.Image, dict]:
    """Light, optional blur and sensor noise on the composed scene."""
    h, w = canvas.shape[:2]
    gain = rng.uniform(*cfg.gain)
    cast = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    g = rng.normal(0, 0.35, 2)
    xx = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
    yy = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None]
    light = 1 + g[0] * xx + g[1] * yy
    vignette = 1 - np.float32(rng.uniform(0, 0.35)) * (xx ** 2 + yy ** 2) / 0.5
    canvas *= (np.float32(gain) * light * vignette)[..., None]
    canvas *= cast
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    sigma = 0.0
    if rng.random() < cfg.blur_share:
        sigma = float(rng.uniform(*cfg.blur_sigma))
        image = image.filter(ImageFilter.GaussianBlur(sigma))
    noise = float(rng.uniform(*cfg.noise_sigma))
    arr = np.asarray(image, np.float32) + np.float32(noise) * rng.standard_normal((h, w, 3), dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), {"gain": round(gain, 3), "blur": round(sigma, 3),
                                                                     "noise": round(noise, 3)}
