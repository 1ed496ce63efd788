"""``IdentifyModel``: a Label Studio ML backend that names boxes from the reference index.

* ``predict``: regions drawn by the person (interactive mode, ``context.result``: rectangles,
  polygons, brush masks) — or, when there are none, the whole image as one box — are identified
  against the project's index; the names go where the labeling config has room for them
  (``pipeline.labelstudio.Layout``: a per-region TextArea / Choices, else a label that is the name).
  ``model_version`` is ``identify-v<index version>``.
* ``fit``: annotation webhooks and START_TRAINING are written to the durable journal and
  acknowledged at once; a background thread applies them with ``pipeline.references.fit.fit``
  (``pipeline.references.journal``), and a catch-up with Label Studio finds what no webhook said.
* ``metrics``: how far the index is behind (journal backlog, last applied, last catch-up).

Heavy state is process-wide (``service()``): the embedder loads once, the per-project index
stores are shared by all requests.  Environment: ``MODEL_DIR`` (indexes),
``PROJECT_CONFIG`` (YAML whose ``providers.identify`` gives model/pretrained/thresholds),
``LF_CLIP_MODEL`` / ``LF_CLIP_PRETRAINED``, ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``.

Run: ``gunicorn 'backends.identify.model:app()'`` or ``init_app(IdentifyModel)``."""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from backends.base import LabelStudioMLBase, ModelResponse, credentials, init_app
from backends.base import settings as contract_settings
from backends.base.errors import LabelConfigError
from pipeline import settings
from pipeline.detections import Detections
from pipeline.labelstudio import Layout, UnsupportedConfig, read_regions
from pipeline.labelstudio import client as ls_client
from pipeline.labelstudio.interactive import person_drawn
from pipeline.model_version import model_version
from pipeline.references import fit as fit_mod
from pipeline.references import service as identify_service

log = logging.getLogger(__name__)

credentials.use(ls_client)  # the contract's get_label_studio_client is label-factory's one client
contract_settings.use(settings.ContractValues())  # and every value it reads comes from pipeline/settings.py


def model_version_for(index_version: int) -> str:
    return model_version(None, index_version)


def just_drawn(context: Optional[dict], width: int, height: int) -> Optional[Detections]:
    """The region an interactive request asks about: the last one a person drew (``person_drawn``; Label
    Studio sends every connected region, predicted ones and earlier drawings too, and naming them all again
    would suggest copies of regions the annotation has). None: no regions (batch)."""
    if not (context or {}).get("result"):
        return None
    drawn = read_regions(person_drawn(context), width, height, kinds=fit_mod.REGION_KINDS)
    return drawn[[len(drawn) - 1]] if len(drawn) else drawn


class IdentifyModel(LabelStudioMLBase):
    def setup(self):
        svc = identify_service.service()
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
        svc = identify_service.service()
        _ = svc.embedder
        svc.start()

    @classmethod
    def metrics(cls) -> dict:
        return {"identify": identify_service.service().metrics()}

    def predict(self, tasks, context=None, **kwargs):
        """Name the region a person just drew (interactive), else the whole image (batch)."""
        svc = identify_service.service()
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
        return identify_service.service().fit(event, data, self._data_key())


def app():
    """WSGI app factory for gunicorn: ``gunicorn 'backends.identify.model:app()'``."""
    return init_app(IdentifyModel)
