"""``IdentifyModel``: a Label Studio ML backend that names boxes from the reference index.

* ``predict``: boxes drawn by the person (interactive mode, ``context.result``) — or, when
  there are none, the whole image as one box — are identified against the project's index.
  ``model_version`` is ``identify-v<index version>``.
* ``fit``: ``backends.identify.fit.fit`` — annotation webhooks keep the index current;
  START_TRAINING rebuilds it.

Heavy state is process-wide (``service()``): the embedder loads once, the per-project index
stores are shared by all requests.  Environment: ``MODEL_DIR`` (indexes),
``PROJECT_CONFIG`` (YAML whose ``providers.identify`` gives model/pretrained/thresholds),
``LF_CLIP_MODEL`` / ``LF_CLIP_PRETRAINED``, ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``.

Run: ``gunicorn 'backends.identify.model:app()'`` or ``init_app(IdentifyModel)``."""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional

from backends.base import LabelStudioMLBase, ModelResponse, init_app
from backends.identify import fit as fit_mod
from backends.identify.predict import identity_results, layout_of
from pipeline.identify.stage import Identifier

log = logging.getLogger(__name__)


class IdentifyService:
    """Embedder + per-project indexes + thresholds: one per process (or injected in tests)."""

    def __init__(self, provider=None, model_dir=None, embedder=None, client_factory=None, image_fetcher=None):
        from pipeline.config import IdentifyProvider
        self.provider = provider or IdentifyProvider()
        self.indexes = fit_mod.ProjectIndexes(model_dir)
        self._embedder = embedder
        self._client_factory = client_factory or fit_mod.label_studio_client
        self._fetcher = image_fetcher
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "IdentifyService":
        from pipeline.config import apply_env_overrides, load_project
        path = os.getenv("PROJECT_CONFIG")
        provider = apply_env_overrides(load_project(path)).providers.identify if path else None
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

    def fit(self, event, data, data_key: Optional[str] = None) -> dict:
        try:
            client = self._client_factory() if event == fit_mod.REBUILD_EVENT else None
        except Exception as e:  # noqa: BLE001
            log.warning("no Label Studio client: %s", e)
            client = None
        return fit_mod.fit(event, data, self.indexes, self.image_fetcher(data_key), self.embedder, client=client)


_service: Optional[IdentifyService] = None
_service_lock = threading.Lock()


def service() -> IdentifyService:
    global _service
    with _service_lock:
        if _service is None:
            _service = IdentifyService.from_env()
        return _service


def set_service(svc: Optional[IdentifyService]) -> None:
    """Inject a service (tests, or a host backend that builds its own)."""
    global _service
    with _service_lock:
        _service = svc


def model_version_for(index_version: int) -> str:
    return f"identify-v{index_version}"


class IdentifyModel(LabelStudioMLBase):
    def setup(self):
        self.set("model_version", model_version_for(service().index_version(self.project_id)))

    def _user_boxes(self, context, lay, width, height):
        boxes, labels = [], []
        for item in (context or {}).get("result") or []:
            value = (item or {}).get("value") or {}
            if str(item.get("type", "")).lower() in ("rectanglelabels", "rectangle") and \
                    all(k in value for k in ("x", "y", "width", "height")):
                box = fit_mod._bbox_pixels(value, width, height)
                if box is not None:
                    boxes.append(box)
                    labs = value.get("rectanglelabels") or []
                    labels.append(labs[0] if labs else None)
        return boxes, labels

    def predict(self, tasks, context=None, **kwargs):
        svc = service()
        lay = layout_of(self.label_interface)
        store = svc.indexes.get(self.project_id)
        if store is None:
            return ModelResponse(predictions=[[] for _ in tasks],
                                 errors=[{"task": t.get("id"), "reason": "no project id"} for t in tasks])
        ident = svc.identifier(self.project_id)
        fetch = svc.image_fetcher(lay.data_key)
        preds, errors, version = [], [], store.current().version
        label_map = None
        for task in tasks:
            try:
                image = fetch(task)
            except Exception as e:  # noqa: BLE001
                log.warning("predict: task %s: image unavailable: %s", task.get("id"), e)
                errors.append({"task": task.get("id"), "reason": f"image unavailable: {e}"})
                preds.append([])
                continue
            boxes, labels = self._user_boxes(context, lay, image.width, image.height)
            if not boxes:
                boxes, labels = [[0, 0, image.width, image.height]], [None]
            matches, version = ident.identify_boxes(image, boxes)
            if label_map is None and lay.rect_type == "rectanglelabels":
                label_map = self.build_label_map(lay.rect_name, sorted(store.current().label_set()))
            result = identity_results(lay, boxes, labels, matches, image.width, image.height, label_map)
            scores = [r["score"] for r in result if "score" in r and r["from_name"] == lay.rect_name]
            preds.append({"result": result, "score": float(sum(scores) / len(scores)) if scores else None,
                          "model_version": model_version_for(version)})
        return ModelResponse(model_version=model_version_for(version), predictions=preds, errors=errors)

    def fit(self, event, data, **kwargs):
        key = None
        if self.label_interface is not None:
            try:
                key = layout_of(self.label_interface).data_key
            except ValueError:
                pass
        res = service().fit(event, data, key)
        if res.get("index_version") is not None:
            self.set("model_version", model_version_for(res["index_version"]))
        return res


def app():
    """WSGI app factory for gunicorn: ``gunicorn 'backends.identify.model:app()'``."""
    return init_app(IdentifyModel)
