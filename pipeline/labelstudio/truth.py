"""The reviewed truth of a Label Studio task: one reading for ``evaluate``, ``calibrate``, ``export`` and the
identify references, so what is measured, what thresholds are fitted to and what a student learns agree.

**Which annotation** (``reviewed_annotation``): of the task's annotations that were submitted and not
cancelled (skipped), the ones marked ground truth (Label Studio's ``ground_truth`` flag) when there are any,
else all of them; of those the latest, by ``updated_at`` (``created_at`` when it has none), then id. A task
without one is not reviewed. Drafts are not annotations and never count. (The identify references keep
every submitted annotation: pipeline/references/fit.py says why.)

**Which regions** (``output_results``): those of the labeling config's output controls, the ones
label-factory fills (``Layout.outputs``: RectangleLabels/Rectangle, PolygonLabels/Polygon,
BrushLabels/Brush on the image it labels). Never a tool that only prompts the model (``smartOnly``,
``find_similar``: the click, box and similar tools of ``config --masks``), a ``model_skip`` control,
keypoints, another image's controls or per-image choices.

**Which boxes** (``boxes``): every output kind read by ``regions.read_regions``, each region as the
axis-aligned box that encloses it in pixels of a ``width`` x ``height`` image: a rectangle's corners with
its rotation applied (**a rotated rectangle counts as its enclosing box**, never skipped), a polygon's
points, a brush's painted pixels (decoded at the size Label Studio recorded, scaled to the image). Clipped
to the image; a region with less than 1 px inside it, or malformed, is left out and counted. A region with
several labels counts once per label. A region's score is its own.

Plain task dicts or label-studio-sdk objects; reads nothing from Label Studio itself."""
from __future__ import annotations

from typing import Iterable, Optional

from pipeline.detections import Detections
from pipeline.labelstudio.layout import Layout
from pipeline.labelstudio.regions import KINDS, read_regions

GEOMETRY = ("box", "polygon", "brush")  # region kinds that are truth (keypoints are prompts, not objects)


def as_dict(obj) -> dict:
    """A task, annotation or prediction as a plain dict (label-studio-sdk objects are dumped)."""
    if obj is None or isinstance(obj, dict):
        return obj or {}
    return obj.model_dump(mode="json")


def _newest(items: list[dict]) -> Optional[dict]:
    key = lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0))  # noqa: E731
    return max(items, key=key) if items else None


def reviewed_annotation(task) -> Optional[dict]:
    """The task's reviewed annotation (the module's rule), None when it has none."""
    submitted = [a for a in map(as_dict, as_dict(task).get("annotations") or []) if not a.get("was_cancelled")]
    flagged = [a for a in submitted if a.get("ground_truth")]
    return _newest(flagged or submitted)


def latest_prediction(task, model_version: str) -> Optional[dict]:
    """The task's latest prediction of ``model_version`` (a version that predicted it twice: the later one)."""
    return _newest([p for p in map(as_dict, as_dict(task).get("predictions") or [])
                    if p.get("model_version") == model_version])


def layout_of(label_config: str) -> Layout:
    """The labeling config read once (``UnsupportedConfig`` when it has no output control on an image)."""
    from label_studio_sdk.label_interface import LabelInterface
    return Layout.from_config(LabelInterface(config=label_config))


def output_results(result: Iterable, layout: Layout, names: bool = False) -> list[dict]:
    """The geometry regions of ``result`` (an annotation's or a prediction's) in the layout's output controls,
    in order; ``names``: with the per-region names (TextArea / Choices) that name them."""
    outputs = {o.name for o in layout.outputs}
    namers = {n.name for n in layout.names} if names else set()
    return [r for r in result or [] if isinstance(r, dict) and (
        (r.get("from_name") in outputs and KINDS.get(str(r.get("type", "")).lower()) in GEOMETRY)
        or r.get("from_name") in namers)]


def recorded_size(*results: Iterable) -> Optional[tuple[int, int]]:
    """The first image size a region recorded (``original_width`` x ``original_height``), None when none did."""
    for result in results:
        for r in result or []:
            if isinstance(r, dict) and r.get("original_width") and r.get("original_height"):
                return int(r["original_width"]), int(r["original_height"])
    return None


def boxes(results: list[dict], width: int, height: int) -> tuple[Detections, int]:
    """``results`` (``output_results``) as boxes in pixels of a ``width`` x ``height`` image, and how many of their
    regions were left out (malformed, or less than 1 px inside the image).

    One row per region and label; ``scores``: the region's own score, NaN when it has none;
    ``extra["as_stored"]``: the enclosing box not clipped to the image; ``extra["region_id"]``, ``["from_name"]``,
    ``["kind"]`` as ``read_regions`` gives them."""
    read = read_regions(results, width, height, kinds=GEOMETRY, every_label=True, scored=True)
    regions = sum(1 for r in results if isinstance(r, dict) and KINDS.get(str(r.get("type", "")).lower()) in GEOMETRY)
    return read, regions - len(set(read.extra["index"].tolist()))
