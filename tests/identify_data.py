"""Synthetic reference images for the identify tests: distinct 'cards' and scenes holding them."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def card(seed: int, size=(96, 136)) -> Image.Image:
    r = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(x) for x in r.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(7):
        x0, y0 = int(r.integers(0, size[0] - 16)), int(r.integers(0, size[1] - 16))
        box = (x0, y0, x0 + int(r.integers(10, 50)), y0 + int(r.integers(10, 50)))
        (d.ellipse if r.integers(0, 2) else d.rectangle)(box, fill=tuple(int(x) for x in r.integers(0, 255, 3)))
    return im


def scene(items, size=(320, 260), background=(128, 128, 128)) -> tuple[Image.Image, list]:
    """Paste (image, x, y, scale) items on a canvas; returns the scene and each item's pixel xyxy."""
    canvas = Image.new("RGB", size, background)
    boxes = []
    for im, x, y, scale in items:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        canvas.paste(im, (x, y))
        boxes.append([x, y, x + im.width, y + im.height])
    return canvas, boxes


def ls_rect(box, width, height, label, region_id, from_name="label", to_name="image") -> dict:
    x1, y1, x2, y2 = box
    return {"id": region_id, "from_name": from_name, "to_name": to_name, "type": "rectanglelabels",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                      "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [label]}}


def webhook(action: str, project_id: int, task: dict, annotation: dict) -> dict:
    """A Label Studio annotation webhook body (as the ML backend's /webhook gets it, 'action' included)."""
    return {"action": action,
            "annotation": {"completed_by": 1, "was_cancelled": False, "ground_truth": False,
                           "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                           "lead_time": 3.2, "task": task["id"], "project": project_id, **annotation},
            "task": {"is_labeled": True, "overlap": 1, "project": project_id, "meta": {}, **task},
            "project": {"id": project_id, "title": "cards", "label_config": "<View/>", "task_number": 3,
                        "total_annotations_number": 1}}


class HashEmbedder:
    """Deterministic vectors from the pixels, without torch (child processes, slow-fit tests).
    ``delay``: seconds each ``embed`` call takes (a slow fit)."""
    dim, id, model_spec, pretrained = 32, "hash", "hash", None

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def embed(self, images):
        import hashlib
        import time
        time.sleep(self.delay)
        out = []
        for im in images:
            seed = int(hashlib.md5(im.tobytes()).hexdigest()[:8], 16)
            out.append(np.random.default_rng(seed).normal(size=self.dim))
        return np.array(out, np.float32).reshape(-1, self.dim)
