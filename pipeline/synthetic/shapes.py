"""The objects of the synthetic world and their look-alikes, as layers of coloured polygons.

Every shape is drawn in unit coordinates (the object spans about [-1, 1] on both axes), layer over layer,
then scaled, squashed (a sign seen at an angle), rotated and textured by ``render``. Colours vary per object
(hue, saturation and brightness jitter), and so does the detail (letters on a stop sign, digits on a speed
sign, the drone's body and rotors).

Classes (``CLASSES``): stop sign (red octagon, white rim, white letters), yield sign (downward triangle, red
rim, white inside), speed sign (white disc in a red ring, dark digits), drone (quadcopter seen from below:
body, four arms, four rotor discs). Look-alikes (``DISTRACTORS``, never labelled): a plain red hexagon or
disc, an upward orange warning triangle, a blue disc in a white ring, a plus-shaped bird/aircraft silhouette
without rotors."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Layer:
    points: np.ndarray  # (N, 2) polygon in unit coordinates
    colour: tuple  # RGB 0..255


def polygon(n: int, r: float = 1.0, phase: float = 0.0, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def ellipse(rx: float, ry: float, cx: float = 0.0, cy: float = 0.0, n: int = 48) -> np.ndarray:
    a = 2 * np.pi * np.arange(n) / n
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def rect(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)


def bar(p: tuple, q: tuple, width: float) -> np.ndarray:
    """A thick line from p to q as a quadrilateral."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) or 1.0) * width / 2
    return np.array([p + n, q + n, q - n, p - n])


def jitter(rgb: tuple, rng: np.random.Generator, hue: float = 0.03, sat: float = 0.25, val: float = 0.3) -> tuple:
    """``rgb`` with its hue shifted by up to ``hue`` (fraction of the circle), saturation and value scaled."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    h = (h + rng.uniform(-hue, hue)) % 1.0
    s = float(np.clip(s * rng.uniform(1 - sat, 1 + sat * 0.3), 0, 1))
    v = float(np.clip(v * rng.uniform(1 - val, 1 + val * 0.3), 0, 1))
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


RED, WHITE, DARK = (205, 25, 30), (240, 240, 235), (25, 25, 28)


# -- the classes ------------------------------------------------------------------------------------------
def stop_sign(rng: np.random.Generator) -> list[Layer]:
    red, white = jitter(RED, rng), jitter(WHITE, rng, sat=0.0, val=0.15)
    phase = np.pi / 8
    layers = [Layer(polygon(8, 1.0, phase), white), Layer(polygon(8, rng.uniform(0.82, 0.9), phase), red)]
    letters = int(rng.integers(3, 6))
    width = 1.2 / letters
    for k in range(letters):
        x = -0.6 + k * width
        layers.append(Layer(rect(x + 0.04, -0.22, x + width - 0.04, 0.22), white))
        layers.append(Layer(rect(x + 0.04 + width * 0.3, -0.1, x + width * 0.7 - 0.04, 0.1), red))
    return layers


def yield_sign(rng: np.random.Generator) -> list[Layer]:
    red, white = jitter(RED, rng), jitter(WHITE, rng, sat=0.0, val=0.15)
    inner = rng.uniform(0.5, 0.62)
    return [Layer(polygon(3, 1.0, np.pi / 2, cy=-0.2), red), Layer(polygon(3, inner, np.pi / 2, cy=-0.2), white)]


def speed_sign(rng: np.random.Generator) -> list[Layer]:
    red, white, dark = jitter(RED, rng), jitter(WHITE, rng, sat=0.0, val=0.15), jitter(DARK, rng, val=0.0)
    layers = [Layer(ellipse(1.0, 1.0), red), Layer(ellipse(*(2 * [rng.uniform(0.72, 0.8)])), white)]
    for cx in (-0.22, 0.22):  # two digits: an outline and its hole
        layers.append(Layer(ellipse(0.17, 0.33, cx=cx), dark))
        layers.append(Layer(ellipse(0.08, rng.uniform(0.15, 0.22), cx=cx), white))
    return layers


def drone(rng: np.random.Generator) -> list[Layer]:
    body = jitter(rng.choice([(30, 30, 32), (90, 92, 88), (200, 200, 195), (85, 95, 60)]), rng, val=0.2)
    rotor = jitter((150, 150, 155), rng, sat=0.0, val=0.2)
    layers = []
    arm = rng.uniform(0.07, 0.12)
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        layers.append(Layer(bar((0, 0), (0.62 * sx, 0.62 * sy), arm), body))
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        r = rng.uniform(0.28, 0.36)
        layers.append(Layer(ellipse(r, r, 0.66 * sx, 0.66 * sy, n=32), rotor))
        layers.append(Layer(ellipse(0.06, 0.06, 0.66 * sx, 0.66 * sy, n=16), body))
    w = rng.uniform(0.2, 0.3)
    layers.append(Layer(rect(-w, -w * 1.3, w, w * 1.3), body))
    return layers


# -- look-alikes (never labelled) ----------------------------------------------------------------------------
def red_plain(rng: np.random.Generator) -> list[Layer]:
    red = jitter(RED, rng)
    shape = polygon(6, 1.0, rng.uniform(0, np.pi)) if rng.random() < 0.5 else ellipse(1.0, 1.0)
    return [Layer(shape, red)]


def warning_sign(rng: np.random.Generator) -> list[Layer]:
    red, fill = jitter(RED, rng), jitter((245, 180, 30), rng)
    return [Layer(polygon(3, 1.0, -np.pi / 2, cy=0.2), red), Layer(polygon(3, 0.7, -np.pi / 2, cy=0.2), fill),
            Layer(rect(-0.06, -0.1, 0.06, 0.35), DARK)]


def blue_disc(rng: np.random.Generator) -> list[Layer]:
    blue, white = jitter((30, 80, 190), rng), jitter(WHITE, rng, sat=0.0, val=0.15)
    return [Layer(ellipse(1.0, 1.0), white), Layer(ellipse(0.85, 0.85), blue),
            Layer(bar((-0.5, 0.3), (0.5, -0.3), 0.15), white)]


def bird(rng: np.random.Generator) -> list[Layer]:
    c = jitter(rng.choice([(30, 30, 32), (90, 92, 88), (60, 50, 40)]), rng, val=0.2)
    span = rng.uniform(0.8, 1.0)
    return [Layer(bar((-span, 0.1), (span, 0.1), rng.uniform(0.15, 0.25)), c),
            Layer(bar((0, -0.9), (0, 0.9), rng.uniform(0.12, 0.2)), c),
            Layer(bar((-0.35, 0.8), (0.35, 0.8), 0.12), c)]


CLASSES: dict[str, Callable] = {"Stop Sign": stop_sign, "Yield Sign": yield_sign, "Speed Sign": speed_sign,
                                "Drone": drone}
DISTRACTORS: dict[str, Callable] = {"red plain": red_plain, "warning sign": warning_sign, "blue disc": blue_disc,
                                    "bird": bird}
RESEMBLES = {"red plain": "Stop Sign", "warning sign": "Yield Sign", "blue disc": "Speed Sign", "bird": "Drone"}
SIGNS = {"Stop Sign", "Yield Sign", "Speed Sign", "red plain", "warning sign", "blue disc"}  # stand on a pole


# -- drawing -----------------------------------------------------------------------------------------------------
def render(layers: list[Layer], diameter: float, angle: float, squash: float, rng: np.random.Generator,
           texture: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """The shape at ``diameter`` px, its x axis squashed by ``squash`` (<= 1), rotated by ``angle`` radians:
    (RGB float32 patch, bool mask), the patch just large enough to hold it. No anti-aliasing: the mask is
    exactly the pixels drawn. ``texture``: relative strength of the object's surface noise and shading."""
    scale = diameter / 2
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    pts = [(layer.points * [squash, 1.0]) @ rot.T * scale for layer in layers]
    allp = np.concatenate(pts)
    lo = np.floor(allp.min(axis=0)) - 1
    size = (np.ceil(allp.max(axis=0)) - lo + 2).astype(int)
    w, h = int(size[0]), int(size[1])
    colour = Image.new("RGB", (w, h))
    mask = Image.new("1", (w, h), 0)
    dc, dm = ImageDraw.Draw(colour), ImageDraw.Draw(mask)
    for layer, p in zip(layers, pts):
        xy = [tuple(v) for v in (p - lo)]
        dc.polygon(xy, fill=layer.colour)
        dm.polygon(xy, fill=1)
    rgb = np.asarray(colour, np.float32)
    m = np.asarray(mask, bool)
    if texture > 0:  # weathering: low-frequency blotches, fine grain, and light falling across the surface
        blotch = np.asarray(Image.fromarray(rng.normal(0, 1, (6, 6)).astype(np.float32)).resize((w, h), Image.BILINEAR))
        grain = rng.normal(0, 0.5, (h, w)).astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        g = rng.normal(0, 1, 2)
        shade = ((xx / max(w, 1) - 0.5) * g[0] + (yy / max(h, 1) - 0.5) * g[1]).astype(np.float32)
        rgb = rgb * (1 + texture * (blotch + grain + 2 * shade))[..., None]
    return np.clip(rgb, 0, 255), m
