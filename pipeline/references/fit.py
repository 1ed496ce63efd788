"""Label Studio events -> reference index updates.

``fit(event, data, index_store, image_fetcher, embedder, client=None)``:

* ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` (and the bulk ``ANNOTATIONS_CREATED``): crop each
  region of that annotation from the task image, as the reviewed truth reads it
  (pipeline/labelstudio/truth.py: the regions of the labeling config's output controls, rectangle — rotated
  or not —, polygon or brush mask, each as the box that encloses it, named by its per-region TextArea or
  Choices; never a tool that only prompts the model). The config comes with the event's project; when an
  event has none that can be read, every rectangle, polygon and brush region counts. Crop them,
  embed the crops, and replace the annotation's vectors (keyed by annotation and region id) — one
  annotation's work, whatever the index size.  A cancelled (skipped) annotation or one without regions
  just removes its vectors.  The index records the version it applied (``updated_at`` and a digest)
  in the same atomic write, so an event identical to what is applied writes nothing (the index
  version, hence ``model_version``, stays) and an older version never replaces a newer one (events
  may arrive late or twice: ``pipeline.references.journal``).
* ``ANNOTATION_DELETED`` / ``ANNOTATIONS_DELETED``: remove the vectors of those annotations and leave
  a tombstone, which every later upsert of the annotation respects (``pipeline.references.ledger``).
* ``START_TRAINING``: rebuild the whole index from every annotation of the project, fetched
  with label-studio-sdk (``lsapi.items``, page by page).  Everything is embedded first and swapped
  in with one atomic write, so a rebuild killed midway leaves the previous index in place; incremental
  events that landed while the rebuild ran are carried over (upserts by version stamp, deletes by tombstone); an
  annotation it finds in Label Studio loses an older tombstone (Label Studio has it again).

Every submitted, non-cancelled annotation is a reference, not only a task's latest (the truth rule of
``evaluate``, ``calibrate`` and ``export``): Label Studio's annotation events carry one annotation and
not its task's others, so the index is kept per annotation, and each person's boxes of an object are
examples of it.

Never raises for bad input: an unknown project, a task whose image is gone, a payload without
an annotation ... is logged and answered with ``{"status": "error" | "ignored", "reason": ...}``.

``index_store`` is an ``IndexStore`` (one project) or a ``ProjectIndexes`` / any callable
``project_id -> IndexStore | None`` (None: a project this backend does not serve).
``image_fetcher(task) -> PIL.Image`` (raises when the image is gone)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import numpy as np
from PIL import Image

from pipeline.crops import crop
from pipeline.detections import Detections
from pipeline.identify.index import IndexSnapshot, IndexStore, make_entry, project_index_path
from pipeline.identify.stage import IDENTIFY_PADDING
from pipeline.labelstudio import UnsupportedConfig, lsapi, truth
from pipeline.labelstudio.layout import Layout
from pipeline.labelstudio.regions import KINDS
from pipeline.references import ledger
from pipeline.settings import Paths

log = logging.getLogger(__name__)

UPSERT_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
DELETE_EVENTS = ("ANNOTATION_DELETED", "ANNOTATIONS_DELETED")
REBUILD_EVENT = "START_TRAINING"
EVENTS = UPSERT_EVENTS + DELETE_EVENTS + (REBUILD_EVENT,)
REGION_KINDS = ("box", "polygon", "brush")  # what an annotation's regions are embedded from (not keypoints)

ImageFetcher = Callable[[dict], Image.Image]


# -- where indexes live ------------------------------------------------------------------
class ProjectIndexes:
    """One ``IndexStore`` per Label Studio project under ``MODEL_DIR/identify/project-<id>/``.

    ``projects``: the project ids this backend serves (None: any project)."""

    def __init__(self, model_dir: Union[str, Path, None] = None, projects: Optional[Iterable] = None):
        self.model_dir = Path(model_dir or Paths.read().model_dir)
        self.projects = None if projects is None else {str(p) for p in projects}
        self._stores: dict[str, IndexStore] = {}

    def get(self, project_id) -> Optional[IndexStore]:
        pid = normalize_project_id(project_id)
        if not pid or (self.projects is not None and pid not in self.projects):
            return None
        store = self._stores.get(pid)
        if store is None:
            store = self._stores.setdefault(pid, IndexStore(project_index_path(self.model_dir, pid)))
        return store

    __call__ = get


def normalize_project_id(value) -> str:
    """Label Studio sends the project as a dict, an int, or ``"<id>.<timestamp>"``."""
    if isinstance(value, dict):
        value = value.get("id")
    if value in (None, ""):
        return ""
    return str(value).split(".", 1)[0]


def _store_for(index_store, project_id) -> Optional[IndexStore]:
    if isinstance(index_store, IndexStore):
        return index_store
    if hasattr(index_store, "get") and not isinstance(index_store, dict):
        return index_store.get(project_id)
    return index_store(project_id)


def _as_dict(obj) -> dict:
    if obj is None or isinstance(obj, dict):
        return obj or {}
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "dict"):
        return obj.dict()
    return dict(vars(obj))


# -- regions of an annotation -------------------------------------------------------------
def project_layout(project, log_why: bool = False) -> Optional[Layout]:
    """The labeling config of an event's ``project`` (a dict or an SDK object) read once, None when it has none
    that names an output control."""
    config = truth.as_dict(project).get("label_config") if not isinstance(project, (int, str)) else None
    if not config:
        return None
    try:
        return truth.layout_of(config)
    except (UnsupportedConfig, ValueError) as e:
        if log_why:
            log.info("project labeling config not usable (%s): every region of an annotation counts", e)
        return None


def regions_of(result: list, width: int, height: int, layout: Optional[Layout] = None) -> Detections:
    """The labelled regions of an annotation result as the reviewed truth reads them (pipeline/labelstudio/
    truth.py: with ``layout``, those of its output controls; without, every rectangle, polygon and brush
    region), each as the pixel box that encloses it, in order.

    A region's label is its per-region TextArea/Choices answer (e.g. the card's name typed per box) when
    there is one, else its own label; a region with neither is skipped."""
    mine = truth.output_results(result, layout, names=True) if layout is not None else result or []
    regions, _ = truth.boxes(mine, width, height)
    unlabelled = np.array([not str(lab) for lab in regions.labels], bool)
    for rid in regions.extra["region_id"][unlabelled]:
        log.info("region %s has no label: skipped", rid)
    return regions[~unlabelled]


def embed_annotation(annotation: dict, task: dict, image: Image.Image, embedder, project_id: str,
                     padding: float = IDENTIFY_PADDING,
                     layout: Optional[Layout] = None) -> tuple[np.ndarray, list[dict]]:
    """(vectors, entries) for every labeled region of one annotation."""
    regions = regions_of(annotation.get("result") or [], image.width, image.height, layout)
    if not len(regions):
        return np.zeros((0, embedder.dim), np.float32), []
    vecs = embedder.embed([crop(image, box, padding) for box in regions.xyxy])
    entries = [make_entry(str(label), None, project=project_id, task=task.get("id"), annotation=annotation.get("id"),
                          region=str(rid), box=[round(float(v), 1) for v in box])
               for label, rid, box in zip(regions.labels, regions.extra["region_id"], regions.xyxy)]
    return vecs, entries


# -- the handlers -------------------------------------------------------------------------------
# Which annotation versions the index reflects and which annotations were deleted are kept in the index
# itself, written in the same atomic update as the vectors (``pipeline.references.ledger``). The catch-up
# (``pipeline.references.journal``) compares them with Label Studio's annotations.


class _Skip(Exception):
    """An update that must not touch the index (aborts ``IndexStore.update`` before it writes)."""


def _stamp(entries: list[dict], version: int) -> list[dict]:
    return [{**e, "v": version} for e in entries]


def _upsert(store: IndexStore, annotation_id, vecs, entries, embedder_id: Optional[str],
            version: ledger.Version) -> IndexSnapshot:
    """Replace the annotation's vectors (none: it has no regions) and record it as applied."""
    def change(old: IndexSnapshot) -> IndexSnapshot:
        reason = ledger.why_skip(old, annotation_id, version)
        if reason:
            raise _Skip(reason)
        new = old.with_annotation(annotation_id, vecs, _stamp(entries, old.version + 1), embedder_id)
        new.info = ledger.with_applied(old, new.info, annotation_id, version, old.version + 1)
        if not len(old):
            new.info.setdefault("created_by", "fit")
        return new
    return store.update(change)


def _delete(store: IndexStore, annotation_ids: list) -> IndexSnapshot:
    """Remove the annotations' vectors and leave a tombstone for each; no write when all are deleted already."""
    def change(old: IndexSnapshot) -> IndexSnapshot:
        ids = ledger.to_delete(old, annotation_ids)
        if not ids:
            raise _Skip("the annotations are deleted already")
        new = old.without_annotations(ids)
        new.info = ledger.with_deleted(old, old.info, ids, old.version + 1)
        return new
    return store.update(change)


def _annotation_ids_of_delete(data: dict) -> list:
    ids = []
    ann = data.get("annotation")
    if isinstance(ann, dict) and ann.get("id") is not None:
        ids.append(ann["id"])
    for a in data.get("annotations") or []:
        if isinstance(a, dict) and a.get("id") is not None:
            ids.append(a["id"])
        elif isinstance(a, (int, str)):
            ids.append(a)
    return ids


def _fetch_task(client, task_id) -> Optional[dict]:
    if client is None or task_id is None:
        return None
    try:
        return _as_dict(client.tasks.get(int(task_id)))
    except Exception as e:  # noqa: BLE001 - any SDK/HTTP failure is "task not available"
        log.warning("cannot fetch task %s from Label Studio: %s", task_id, e)
        return None


def fit(event: str, data: dict, index_store, image_fetcher: ImageFetcher, embedder, client=None,
        padding: float = IDENTIFY_PADDING) -> dict:
    """Handle one Label Studio event; returns a JSON-ready summary, never raises for bad input."""
    t0 = time.perf_counter()
    data = data or {}
    pid = normalize_project_id(data.get("project") or (data.get("task") or {}).get("project"))
    out = {"event": event, "project": pid or None}
    if event not in EVENTS:
        return {**out, "status": "ignored", "reason": f"event {event!r} is not handled"}
    if not pid:
        log.warning("%s without a project id: ignored", event)
        return {**out, "status": "ignored", "reason": "payload has no project id"}
    store = _store_for(index_store, pid)
    if store is None:
        log.warning("%s for project %s, which this backend does not serve: ignored", event, pid)
        return {**out, "status": "ignored", "reason": f"unknown project {pid}"}
    layout = project_layout(data.get("project"), log_why=event in UPSERT_EVENTS)
    try:
        if event in UPSERT_EVENTS and isinstance(data.get("annotation"), list):  # ANNOTATIONS_CREATED (bulk)
            tasks = {str(_as_dict(t).get("id")): _as_dict(t) for t in data.get("task") or []}
            parts = [_fit_annotation(event, {"annotation": a, "task": tasks.get(str(_as_dict(a).get("task")), {})},
                                     store, image_fetcher, embedder, client, padding, pid, layout)
                     for a in data["annotation"]]
            ok = [p for p in parts if p["status"] == "ok"]
            res = {"status": "ok" if len(ok) == len(parts) else ("partial" if ok else "error"),
                   "annotations": len(parts), "vectors_added": sum(p.get("vectors_added", 0) for p in ok),
                   "index_version": store.current().version,
                   "errors": [p for p in parts if p["status"] == "error"]}
        elif event in UPSERT_EVENTS:
            res = _fit_annotation(event, data, store, image_fetcher, embedder, client, padding, pid, layout)
        elif event in DELETE_EVENTS:
            ids = _annotation_ids_of_delete(data)
            if not ids:
                res = {"status": "ignored", "reason": "no annotation id in the payload"}
            else:
                try:
                    snap, note = _delete(store, ids), None
                except _Skip as e:
                    snap, note = store.current(), f"not applied: {e}"
                res = {"status": "ok", "annotations": ids, "index_version": snap.version, "vectors": len(snap)}
                if note:
                    res["note"] = note
        else:
            res = rebuild(pid, store, image_fetcher, embedder, client, padding)
    except Exception as e:  # noqa: BLE001 - a webhook must be answered, the reason logged
        log.exception("%s for project %s failed", event, pid)
        res = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
    res = {**out, **res, "seconds": round(time.perf_counter() - t0, 4)}
    log.info("identify fit: %s", {k: v for k, v in res.items() if k != "skipped"})
    return res


def _fit_annotation(event, data, store, image_fetcher, embedder, client, padding, pid, layout=None) -> dict:
    ann = _as_dict(data.get("annotation"))
    if not ann or ann.get("id") is None:
        return {"status": "ignored", "reason": "payload has no annotation (with an id)"}
    aid, version = ann["id"], ledger.Version.of(ann)
    snap = store.current()
    reason = ledger.why_skip(snap, aid, version)
    if reason:  # checked again under the write lock; here it saves the download and the embedding
        return {"status": "ok", "annotation": aid, "vectors_added": 0, "index_version": snap.version,
                "note": f"not applied: {reason}"}
    task = _as_dict(data.get("task"))
    result = ann.get("result") or []
    mine = truth.output_results(result, layout) if layout is not None else result
    regions_present = any(isinstance(r, dict) and KINDS.get(str(r.get("type", "")).lower()) in REGION_KINDS
                          for r in mine)
    vecs, entries, note = np.zeros((0, embedder.dim), np.float32), [], None
    if ann.get("was_cancelled"):
        note = "annotation was cancelled (skipped): its vectors are removed"
    elif regions_present:
        if not task.get("data"):
            task = _fetch_task(client, task.get("id") or ann.get("task")) or task
        if not task.get("data"):
            return {"status": "error", "annotation": aid, "reason": "no task data in the payload and the task "
                                                                      "could not be fetched"}
        try:
            image = image_fetcher(task)
        except Exception as e:  # noqa: BLE001 - the image is gone / refused / broken
            log.warning("%s: annotation %s of task %s: image unavailable: %s", event, aid, task.get("id"), e)
            return {"status": "error", "annotation": aid, "task": task.get("id"),
                    "reason": f"image unavailable: {e}"}
        vecs, entries = embed_annotation(ann, task, image, embedder, pid, padding, layout)
    try:
        snap = _upsert(store, aid, vecs, entries, embedder.id if len(entries) else None, version)
    except _Skip as e:
        return {"status": "ok", "annotation": aid, "vectors_added": 0, "index_version": store.current().version,
                "note": f"not applied: {e}"}
    out = {"status": "ok", "annotation": aid, "task": task.get("id"), "vectors_added": len(entries),
           "labels": sorted({e["label"] for e in entries}), "index_version": snap.version, "vectors": len(snap)}
    return {**out, "note": note} if note else out


def iter_project_tasks(client, project_id, page_size: int = 100) -> Iterable[dict]:
    """Every task of the project with its annotations (``lsapi.items``: page by page, never past the last)."""
    for task in lsapi.items(client.tasks.list, page_size, project=int(project_id), fields="all"):
        yield _as_dict(task)


def rebuild(project_id, store: IndexStore, image_fetcher: ImageFetcher, embedder, client,
            padding: float = IDENTIFY_PADDING, progress: Optional[Callable[[int], None]] = None) -> dict:
    """START_TRAINING: a new index from all the project's annotations, swapped in atomically."""
    if client is None:
        return {"status": "error", "reason": "no Label Studio client (set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)"}
    try:
        layout = project_layout(client.projects.get(int(project_id)), log_why=True)
    except Exception as e:  # noqa: BLE001 - 404 for an unknown project, or no connection
        log.warning("START_TRAINING: project %s not available from Label Studio: %s", project_id, e)
        return {"status": "error", "reason": f"project {project_id} not available from Label Studio: {e}"}
    start_version = store.current().version
    vecs, entries, skipped, n_ann, seen = [], [], [], 0, {}
    for task in iter_project_tasks(client, project_id):
        anns = []
        for a in (_as_dict(a) for a in task.get("annotations") or []):
            if not a.get("was_cancelled") and a.get("result"):
                anns.append(a)
            elif a.get("id") is not None:
                seen[str(a["id"])] = ledger.Version.of(a)  # nothing to embed: applied as it is
        if not anns:
            continue
        try:
            image = image_fetcher(task)
        except Exception as e:  # noqa: BLE001
            log.warning("START_TRAINING: task %s: image unavailable: %s", task.get("id"), e)
            skipped.append({"task": task.get("id"), "reason": str(e)})
            continue
        for ann in anns:
            v, ents = embed_annotation(ann, task, image, embedder, str(project_id), padding, layout)
            n_ann += 1
            seen[str(ann.get("id"))] = ledger.Version.of(ann)
            if len(ents):
                vecs.append(v)
                entries.extend(ents)
        if progress:
            progress(len(entries))
    v = np.concatenate(vecs) if vecs else np.zeros((0, embedder.dim), np.float32)
    fresh = IndexSnapshot(v, entries, embedder=embedder.id, dim=embedder.dim,
                          info={"created_by": "START_TRAINING", "model": embedder.model_spec,
                                "pretrained": embedder.pretrained})

    def change(old: IndexSnapshot) -> IndexSnapshot:
        new_version = old.version + 1
        snap = fresh
        done = {a: ver.record(new_version) for a, ver in seen.items()}
        if old.version > start_version and old.embedder == embedder.id:  # events landed meanwhile: keep them
            dead = {a for a, t in ledger.tombstones(old).items() if t.version > start_version}
            later = {a: v for a, v in ledger.applied(old).items() if v[1] > start_version}
            newer = {}
            for i, e in enumerate(old.entries):
                if e.get("v", 0) > start_version and "annotation" in e["source"]:
                    newer.setdefault(str(e["source"]["annotation"]), []).append(i)
            drop = dead | set(newer) | set(later)
            snap = snap.removed(lambda e: str(e["source"].get("annotation")) in drop)
            idx = [i for ids in newer.values() for i in ids]
            if idx:
                snap = snap.added(old.vectors[idx], [old.entries[i] for i in idx], old.embedder)
            done = {a: v for a, v in {**done, **later}.items() if a not in dead}
        info = {**fresh.info, ledger.TOMBSTONES: ledger.lifted(old, seen, start_version), ledger.APPLIED: done}
        snap = IndexSnapshot(snap.vectors, _stamp(snap.entries, new_version), embedder=embedder.id, dim=embedder.dim,
                             normalized=True, info=info)
        return snap

    snap = store.update(change)
    return {"status": "ok", "annotations": n_ann, "vectors": len(snap), "labels": len(snap.label_set()),
            "index_version": snap.version, "skipped": skipped}


# -- image fetchers -------------------------------------------------------------------------------
def task_image_url(task: dict, data_key: Optional[str] = None) -> str:
    data = task.get("data") or {}
    if data_key and data_key in data:
        return str(data[data_key])
    for key in ("image", "img", "url"):
        if isinstance(data.get(key), str):
            return data[key]
    for v in data.values():
        if isinstance(v, str) and ("/" in v or ":" in v):
            return v
    raise KeyError(f"task {task.get('id')} has no image URL in its data (keys: {sorted(data)})")


def label_studio_image_fetcher(data_key: Optional[str] = None) -> ImageFetcher:
    """Fetch ``task['data'][data_key]`` through Label Studio (pipeline.labelstudio.media.fetch_image)."""
    def fetch(task: dict) -> Image.Image:
        from pipeline.labelstudio.media import fetch_image
        return fetch_image(task_image_url(task, data_key), task_id=task.get("id"))
    return fetch


def label_studio_client():
    """The process's label-studio-sdk client for LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY
    (``pipeline.labelstudio.client``: one per process, so one token exchange), or None without them."""
    from pipeline.labelstudio import client as credentials
    if not (credentials.label_studio_url() and credentials.label_studio_api_key()):
        return None
    return credentials.client()
