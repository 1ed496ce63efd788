"""A synthetic world as a label-factory project: images and the importer's manifest on disk, the truth beside
them, a project YAML, and a Label Studio project made from them the way ``label-factory import`` makes one.

``write_world(world, indices, root)`` lays out::

    root/<name>.yaml                    the project (labels = the world's classes, one query each)
    root/images/<bucket>/<seed>-<i>.jpg the scenes (JPEG, the world's size)
    root/manifest.jsonl                 the importer's manifest (pipeline/importer/manifest.py): one entry per image
    root/truth.jsonl                    per image: entry id, world seed and scene index, size, boxes and labels

``to_label_studio(root, url, api_key)`` then creates (or reuses) the Label Studio project named in the YAML with
the labeling config ``label-factory config`` prints, uploads every image not there yet and imports one task per
image with the manifest's meta (``LabelStudioTarget.sync``, the importer's own code), and records the task ids
in the manifest. ``annotation(...)`` is a reviewed annotation as Label Studio stores one (boxes, ``lead_time``)."""
from __future__ import annotations

import hashlib
import io
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional
from xml.sax.saxutils import quoteattr

import numpy as np
import yaml

from pipeline.atomic import save_text
from pipeline.config import ProjectConfig, parse_project
from pipeline.detections import Detections
from pipeline.importer.manifest import Manifest
from pipeline.synthetic.shapes import CLASSES
from pipeline.synthetic.world import Scene, World

NAME = "synthetic-world"
QUERIES = {"Stop Sign": "stop sign", "Yield Sign": "yield sign", "Speed Sign": "speed limit sign", "Drone": "drone"}
TRUTH = "truth.jsonl"
JPEG_QUALITY = 92


def project_dict(world: World, name: str = NAME) -> dict:
    """The project YAML of a world: one label per class, grounded by one text query each."""
    labels = world.classes
    return {"project_name": name, "target_object": "road sign or drone",
            "description": f"synthetic world, seed {world.seed}: {', '.join(labels)} among look-alikes and clutter",
            "label": labels[0], "queries": {lab: [QUERIES.get(lab, lab.lower())] for lab in labels},
            "prompts": {"filter": "Does this image show a road sign or a drone? Answer YES or NO.",
                        "verify": "Is this a {target_object}? Answer YES or NO."}}


def project_config(world: World, name: str = NAME) -> ProjectConfig:
    return parse_project(project_dict(world, name), f"<synthetic world {world.seed}>")


def _jpeg(scene: Scene) -> bytes:
    buf = io.BytesIO()
    scene.image.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def truth_record(entry_id: str, world: World, scene: Scene) -> dict:
    return {"id": entry_id, "seed": world.seed, "index": scene.index, "width": scene.size[0],
            "height": scene.size[1], "boxes": scene.boxes.astype(float).tolist(), "labels": list(scene.labels),
            "lookalikes": scene.meta.get("lookalikes", [])}


def write_world(world: World, indices: Iterable[int], root: Path, name: str = NAME,
                bucket: str = "positive/synthetic") -> Manifest:
    """Render scenes ``indices`` of ``world`` into ``root`` (module docstring); returns the manifest. Scenes
    already written (same seed and index) are kept as they are."""
    root = Path(root)
    manifest = Manifest.load(root)
    truth = read_truth(root)
    (root / "images" / bucket).mkdir(parents=True, exist_ok=True)
    for i in indices:
        url = f"synthetic://{world.seed}/{int(i)}"
        if manifest.knows_url(url):
            continue
        scene = world.scene(int(i))
        data = _jpeg(scene)
        sha = hashlib.sha256(data).hexdigest()
        rel = Path("images") / bucket / f"{world.seed}-{int(i)}.jpg"
        (root / rel).write_bytes(data)
        entry = manifest.add({"id": sha[:16], "path": rel.as_posix(), "bucket": bucket, "source": "synthetic",
                              "query": f"world seed {world.seed}", "image_url": url, "page_url": "",
                              "license": "generated", "attribution": "label-factory synthetic world",
                              "title": f"scene {int(i)} of world {world.seed}", "sha256": sha, "phash": "",
                              "width": scene.size[0], "height": scene.size[1], "bytes": len(data)})
        truth[entry["id"]] = truth_record(entry["id"], world, scene)
    manifest.save()
    save_text(root / TRUTH, "".join(json.dumps(t, sort_keys=True) + "\n" for t in truth.values()))
    save_text(root / f"{name}.yaml", yaml.safe_dump(project_dict(world, name), sort_keys=False))
    return manifest


def read_truth(root: Path) -> dict[str, dict]:
    """entry id -> truth record (``truth_record``) of a written world; {} when there is none."""
    path = Path(root) / TRUTH
    if not path.exists():
        return {}
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def truth_detections(record: dict) -> Detections:
    boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4)
    return Detections(xyxy=boxes, scores=[math.nan] * len(boxes), labels=list(record["labels"]))


def to_label_studio(root: Path, url: Optional[str] = None, api_key: Optional[str] = None, name: str = NAME,
                    client=None) -> dict:
    """Import the written world into Label Studio as the importer does (upload storage); returns the sync
    summary (``project``, ``imported``, ``already``, ``missing``) plus ``tasks``: entry id -> task id."""
    from pipeline.config import load_project
    from pipeline.importer.ls_project import LabelStudioTarget
    root = Path(root)
    cfg = load_project(root / f"{name}.yaml")
    target = LabelStudioTarget(url, api_key, client=client)
    manifest = Manifest.load(root)
    out = target.sync(cfg, manifest)
    key = f"{target.url}#{out['project']}"
    out["tasks"] = {e["id"]: e["label_studio"][key] for e in manifest if key in e.get("label_studio", {})}
    return out


def annotation(dets: Detections, width: int, height: int, lead_time: Optional[float] = None) -> dict:
    """A submitted annotation of ``dets`` (boxes in pixels) for the labeling config ``label-factory config`` makes
    for a world (``RectangleLabels`` "label" on ``Image`` "image"): ``result`` through label-factory's output layer
    (pipeline/labelstudio) and ``lead_time`` seconds."""
    labels = tuple(dict.fromkeys([*CLASSES, *dets.labels.astype(str)]))
    results = _layout(labels).results(dets, width, height)[0] if len(dets) else []
    for r in results:
        r.pop("score", None)  # a person's box has no score
    out = {"result": results, "was_cancelled": False}
    if lead_time is not None:
        out["lead_time"] = float(lead_time)
    return out


@lru_cache(maxsize=8)
def _layout(labels: tuple[str, ...]):
    from label_studio_sdk.label_interface import LabelInterface

    from pipeline.labelstudio import Layout
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
              + "".join(f"<Label value={quoteattr(lab)}/>" for lab in labels) + "</RectangleLabels></View>")
    return Layout.from_config(LabelInterface(config=config))
