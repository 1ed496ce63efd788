"""``IdentifyModel``: a Label Studio ML backend that names boxes from the reference index.

* ``predict``: regions drawn by the person (interactive mode, ``context.result``: rectangles,
  polygons, brush masks) — or, when there are none, the whole image as one box — are identified
  against the project's index; the names go where the labeling config has room for them
  (``pipeline.labelstudio.Layout``: a per-region TextArea / Choices, else a label that is the name).
  ``model_version`` is ``identify-v<index version>``.
* ``fit``: annotation webhooks and START_TRAINING are written to the durable journal and
  acknowledged at once; a background thread applies them with ``backends.identify.fit.fit``
  (``backends.identify.journal``), and a catch-up with Label Studio finds what no webhook said.
* ``metrics``: how far the index is behind (journal backlog, last applied, last catch-up).

Heavy state is process-wide (``service()``): the embedder loads once, the per-project index
stores are shared by all requests.  Environment: ``MODEL_DIR`` (indexes),
``PROJECT_CONFIG`` (YAML whose ``providers.identify`` gives model/pretrained/thresholds),
``LF_CLIP_MODEL`` / ``LF_CLIP_PRETRAINED``, ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``.

Run: ``gunicorn 'backends.identify.model:app()'`` or ``init_app(IdentifyModel)``."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Optional

import numpy as np

from backends.base import LabelStudioMLBase, ModelResponse, init_app
from backends.base.errors import LabelConfigError
from backends.identify import fit as fit_mod
from backends.identify import journal as journal_mod
from backends.identify import ledger
from pipeline.config import model_version
from pipeline.detections import Detections
from pipeline.identify.stage import Identifier
from pipeline.labelstudio import PREDICTED_ORIGINS, Layout, UnsupportedConfig, read_regions
from pipeline.process_cache import ProcessCache

log = logging.getLogger(__name__)


class IdentifyService:
    """Embedder + per-project indexes + thresholds + the webhook journal and its applier thread:
    one per process (or injected in tests)."""

    def __init__(self, provider=None, model_dir=None, embedder=None, client_factory=None, image_fetcher=None):
        from pipeline.config import IdentifyProvider
        self.provider = provider or IdentifyProvider()
        self.indexes = fit_mod.ProjectIndexes(model_dir)
        self._embedder = embedder
        self._client_factory = client_factory or fit_mod.label_studio_client
        self._fetcher = image_fetcher
        self._lock = threading.Lock()
        self._journal: Optional[journal_mod.Journal] = None
        self._applier: Optional[journal_mod.Applier] = None
        self._watched: set = set()

    @classmethod
    def from_env(cls) -> "IdentifyService":
        from pipeline.config import load_project
        path = os.getenv("PROJECT_CONFIG")
        provider = load_project(path).providers.identify if path else None
        return cls(provider)

    @property
    def embedder(self):
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    from pipeline.identify.embedder import embedder_for
                    self._embedder = embedder_for(self.provider)
        return self._embedder

    def image_fetcher(self, data_key: Optional[str] = None):
        return self._fetcher or fit_mod.label_studio_image_fetcher(data_key)

    def identifier(self, project_id, provider=None, pin: bool = False) -> Identifier:
        """The Pipeline identify hook for this project's index.

        ``provider``: thresholds (min_cosine, min_margin, top_k) to use instead of the service's,
        e.g. the ``providers.identify`` of the YAML the caller runs. ``pin``: search one snapshot,
        taken now, for the hook's whole life (a request answers from one index version, given by
        ``last_version`` from the start) instead of the newest on every call."""
        store = self.indexes.get(project_id)
        if store is None:
            raise KeyError(f"project {project_id} is not served")
        if not pin:
            return Identifier.from_config(store, self.embedder, provider or self.provider)
        snap = store.current()
        ident = Identifier.from_config(snap, self.embedder, provider or self.provider)
        ident.last_version = snap.version
        return ident

    def index_version(self, project_id) -> int:
        store = self.indexes.get(project_id)
        return store.current().version if store is not None else 0

    # -- events: journalled, then applied by the applier thread ----------------------------------
    @property
    def journal_path(self):
        return self.indexes.model_dir / "identify" / "journal.db"

    @property
    def journal(self) -> journal_mod.Journal:
        with self._lock:
            if self._journal is None:
                self._journal = journal_mod.Journal(self.journal_path)
            return self._journal

    def start(self) -> None:
        """Start this process's applier thread (idempotent); the first start asks for a catch-up of
        every project the journal knows (what happened while no process was listening)."""
        journal = self.journal
        with self._lock:
            if self._applier is None or not self._applier.is_alive():
                if self._applier is None:
                    journal.request_checks()
                self._applier = journal_mod.Applier(journal, self._apply_entry, self.catch_up)
                self._applier.start()

    def stop(self) -> None:
        with self._lock:
            applier, self._applier = self._applier, None
        if applier is not None:
            applier.stop()

    def fit(self, event, data, data_key: Optional[str] = None) -> dict:
        """Journal an index event (on disk when this returns) for the applier thread; answers at once."""
        data = data or {}
        pid = fit_mod.normalize_project_id(data.get("project") or (data.get("task") or {}).get("project"))
        out = {"event": event, "project": pid or None}
        if event not in fit_mod.EVENTS:
            return {**out, "status": "ignored", "reason": f"event {event!r} is not handled"}
        if not pid or self.indexes.get(pid) is None:
            return {**out, "status": "ignored", "reason": f"unknown project {pid}" if pid else "no project id"}
        entry_id = self.journal.append(pid, event, data, data_key)
        self.watch(pid, data_key)
        self.start()
        self._applier.wake()
        return {**out, "status": "queued", "journal_id": entry_id, "backlog": self.journal.open_entries(pid)}

    def apply(self, event, data, data_key: Optional[str] = None) -> dict:
        """Apply one event to the index now (``fit.fit``)."""
        try:
            client = self._client_factory() if event == fit_mod.REBUILD_EVENT else None
        except Exception as e:  # noqa: BLE001
            log.warning("no Label Studio client: %s", e)
            client = None
        return fit_mod.fit(event, data, self.indexes, self.image_fetcher(data_key), self.embedder, client=client)

    def _apply_entry(self, entry: journal_mod.Entry) -> dict:
        return self.apply(entry.event, entry.data, entry.data_key)

    # -- catching up with Label Studio ---------------------------------------------------------------
    def watch(self, project_id, data_key: Optional[str] = None) -> None:
        """A project this process serves: caught up with Label Studio at first sight, then on schedule."""
        pid = fit_mod.normalize_project_id(project_id)
        if not pid or (pid, data_key) in self._watched or self.indexes.get(pid) is None:
            return
        self.journal.watch(pid, data_key)
        self._watched.add((pid, data_key))
        self.start()

    def catch_up(self, project_id, data_key: Optional[str] = None) -> dict:
        """Journal what Label Studio has and the index lacks (and deletes it missed); a report."""
        pid = fit_mod.normalize_project_id(project_id)
        store = self.indexes.get(pid)
        if store is None:
            return {"status": "ignored", "reason": f"unknown project {pid}"}
        client = self._client_factory()
        if client is None:
            return {"status": "error", "reason": "no Label Studio client (set LABEL_STUDIO_URL and "
                                                 "LABEL_STUDIO_API_KEY): cannot compare with Label Studio"}
        t0, listed_at = time.monotonic(), store.current().version
        listing = []
        for task in fit_mod.iter_project_tasks(client, pid):
            bare = {k: v for k, v in task.items() if k not in ("annotations", "predictions", "drafts")}
            listing.extend((bare, fit_mod._as_dict(a)) for a in task.get("annotations") or [])
        diff = journal_mod.compare(listing, store.current(), listed_at)
        journalled = 0
        if len(diff["upsert"]) > journal_mod.CATCHUP_REBUILD_ABOVE:  # far behind (e.g. identify just turned on):
            self.journal.append(pid, fit_mod.REBUILD_EVENT, {"project": {"id": pid}}, data_key, source="catch-up")
            journalled = 1  # one rebuild writes the index once instead of once per annotation
        else:
            for task, ann in diff["upsert"]:
                self.journal.append(pid, "ANNOTATION_UPDATED", {"project": {"id": pid}, "task": task,
                                                                "annotation": ann}, data_key, source="catch-up")
            journalled = len(diff["upsert"])
            if diff["gone"]:
                self.journal.append(pid, "ANNOTATIONS_DELETED", {"project": {"id": pid},
                                                                 "annotations": [{"id": a} for a in diff["gone"]]},
                                    data_key, source="catch-up")
                journalled += 1
        report = {"status": "ok", **{k: v for k, v in diff.items() if k not in ("upsert", "gone")},
                  "journalled": journalled, "rebuild": len(diff["upsert"]) > journal_mod.CATCHUP_REBUILD_ABOVE,
                  "seconds": round(time.monotonic() - t0, 3)}
        if report["journalled"]:
            log.warning("identify catch-up, project %s: %d annotation(s) not in the index, %d outdated, %d deleted "
                        "in Label Studio: journalled", pid, diff["not_in_index"], diff["outdated_in_index"],
                        diff["deleted_in_ls"])
        return report

    def metrics(self) -> dict:
        """How far the indexes are behind: journal backlog, last applied entry, last catch-up per project."""
        stats = self.journal.stats()
        for pid, p in stats["projects"].items():
            store = self.indexes.get(pid)
            if store is not None:
                snap = store.current()
                p.update(index_version=snap.version, vectors=len(snap), annotations_applied=len(ledger.applied(snap)))
        stats["applier_running"] = self._applier is not None and self._applier.is_alive()
        return stats


_services: ProcessCache = ProcessCache("identify service")  # "service" -> the process's IdentifyService


def service() -> IdentifyService:
    """The process's service, built from the environment on first use."""
    return _services.get("service", IdentifyService.from_env)


def loaded_service() -> Optional[IdentifyService]:
    """The process's service if one was built or injected (never builds one)."""
    return _services.peek("service")


def set_service(svc: Optional[IdentifyService]) -> None:
    """Inject a service (tests, or a host backend that builds its own); None: build from the env on next use."""
    if svc is None:
        _services.pop("service")
    else:
        _services.put("service", svc)


def model_version_for(index_version: int) -> str:
    return model_version(None, index_version)


def just_drawn(context: Optional[dict], width: int, height: int) -> Optional[Detections]:
    """The region an interactive request asks about: the last region of the context that is not a prediction.

    Label Studio sends every connected region of the annotation, predicted ones and earlier drawings too;
    naming them all again would suggest copies of regions the annotation has. None: no regions (batch)."""
    results = (context or {}).get("result")
    if not results:
        return None
    mine = [r for r in results if isinstance(r, dict) and r.get("origin") not in PREDICTED_ORIGINS]
    drawn = read_regions(mine, width, height, kinds=fit_mod.REGION_KINDS)
    return drawn[[len(drawn) - 1]] if len(drawn) else drawn


class IdentifyModel(LabelStudioMLBase):
    def setup(self):
        svc = service()
        self.set("model_version", model_version_for(svc.index_version(self.project_id)))
        if self.project_id:
            svc.watch(self.project_id, self._data_key())

    def _data_key(self) -> Optional[str]:
        try:
            return Layout.from_config(self.label_interface).data_key
        except UnsupportedConfig:
            return None

    @classmethod
    def warm_up(cls) -> None:
        """At worker start: load the embedder and apply what the journal holds (e.g. after a kill)."""
        svc = service()
        _ = svc.embedder
        svc.start()

    @classmethod
    def metrics(cls) -> dict:
        return {"identify": service().metrics()}

    def predict(self, tasks, context=None, **kwargs):
        """Name the region a person just drew (interactive), else the whole image (batch)."""
        svc = service()
        try:
            layout = Layout.from_config(self.label_interface)
        except UnsupportedConfig as e:
            raise LabelConfigError(str(e)) from None
        store = svc.indexes.get(self.project_id)
        if store is None:
            return ModelResponse(predictions=[[] for _ in tasks],
                                 errors=[{"task": t.get("id"), "reason": "no project id"} for t in tasks])
        ident = svc.identifier(self.project_id)
        fetch = svc.image_fetcher(layout.data_key)
        preds, errors, version = [], [], store.current().version
        for task in tasks:
            try:
                image = fetch(task)
            except Exception as e:  # noqa: BLE001
                log.warning("predict: task %s: image unavailable: %s", task.get("id"), e)
                errors.append({"task": task.get("id"), "reason": f"image unavailable: {e}"})
                preds.append([])
                continue
            w, h = image.width, image.height
            drawn = just_drawn(context, w, h)
            if drawn is None:
                drawn = Detections(xyxy=[[0, 0, w, h]], scores=[np.nan], labels=[""], stage=["user"])
            elif not len(drawn):  # only predicted regions in the context: nothing new to name
                preds.append([])
                continue
            # a region without a label (the whole image) takes the first label, so it can carry a name
            drawn.relabel([str(lab) or next(iter(layout.labels()), "") for lab in drawn.labels])
            matches, version = ident.identify_boxes(image, drawn.xyxy)
            drawn.set_identities(range(len(drawn)), matches)
            pred, _ = layout.prediction(drawn, w, h, model_version_for(version))
            preds.append(pred)
        return ModelResponse(model_version=model_version_for(version), predictions=preds, errors=errors)

    def fit(self, event, data, **kwargs):
        """Journalled and answered at once; the model_version follows the index on the next request."""
        return service().fit(event, data, self._data_key())


def app():
    """WSGI app factory for gunicorn: ``gunicorn 'backends.identify.model:app()'``."""
    return init_app(IdentifyModel)
