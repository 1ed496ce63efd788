"""The identify service: the CLIP embedder, the per-project reference indexes and the webhook journal with
its applier thread, one per process (``service()``), shared by the stand-alone identify backend and the
identify stage of the auto-label backend and the predict jobs. Environment: ``MODEL_DIR`` (indexes),
``PROJECT_CONFIG`` (YAML whose ``providers.identify`` gives model/pretrained/thresholds),
``LF_CLIP_MODEL`` / ``LF_CLIP_PRETRAINED``, ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``."""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from pipeline.identify.stage import Identifier
from pipeline.process_cache import ProcessCache
from pipeline.references import fit as fit_mod
from pipeline.references import journal as journal_mod
from pipeline.references import ledger
from pipeline.settings import Paths

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
        path = Paths.read().project_config
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
        project = {"id": pid, **_label_config(client, pid)}  # so an entry's regions are read as a webhook's are
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
                self.journal.append(pid, "ANNOTATION_UPDATED", {"project": project, "task": task, "annotation": ann},
                                    data_key, source="catch-up")
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


def _label_config(client, pid: str) -> dict:
    """``{"label_config": ...}`` of the project, {} when Label Studio does not say (the entries then read every
    region, as a webhook without a config does)."""
    try:
        config = getattr(client.projects.get(int(pid)), "label_config", None)
    except Exception as e:  # noqa: BLE001 - the listing below reports an unreachable Label Studio
        log.info("project %s: labeling config not read: %s", pid, e)
        return {}
    return {"label_config": config} if config else {}


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
