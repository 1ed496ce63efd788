"""Label Studio API calls that the batch job (``predict``), ``up`` and the ML backend share, through
label-studio-sdk. It must not start Label Studio (pipeline/stack/labelstudio.py does) nor hold
credentials (backends/base/credentials.py does).

* ``items``: every item of a paginated list, never asking for a page past the last one.
  label-studio-sdk 2.1's pager treats any non-empty page as having a next one, and Label Studio
  answers that request with 404 and a traceback in its log.
* ``use_version``: make a project's ``model_version`` the version of the predictions label-factory
  wrote. Label Studio 1.23 (community feature flags) scores the Data Manager's *Prediction score*
  column, sorts it, shows predictions in the labeling stream and preselects "create annotations from
  predictions" only for predictions of the project's ``model_version``
  (``data_manager/managers.py: annotate_predictions_score``, ``tasks/models.py:
  get_predictions_for_prelabeling``), and it sets that field to the ML backend's *title* when the
  backend is connected (``ml/api.py: MLBackendListAPI.perform_create``), a version no prediction
  has. It accepts a new value only once predictions of it are stored
  (``projects/serializers.py: validate_model_version``)."""
from __future__ import annotations

import logging
from typing import Callable, Iterator, Optional

log = logging.getLogger(__name__)


class VersionNotStored(RuntimeError):
    """Label Studio has no prediction of that version yet (it refuses to make it the project's)."""


def items(list_method: Callable, page_size: int = 100, **params) -> Iterator:
    """Every item of ``list_method`` (``client.tasks.list``, ``client.projects.list``, ...), page by page."""
    page, seen = 1, 0
    while True:
        pager = list_method(page=page, page_size=page_size, **params)
        batch = list(pager.items or [])
        yield from batch
        seen += len(batch)
        response = getattr(pager, "response", None)
        total = getattr(response, "total", None)
        if total is None:
            total = getattr(response, "count", None)
        if len(batch) < page_size or (isinstance(total, int) and seen >= total):
            return
        page += 1


def use_version(client, project_id: int, version: str) -> Optional[str]:
    """Set the project's model_version to ``version``; returns the value it had, or None when it already
    was ``version``. Raises VersionNotStored while Label Studio has no prediction of it."""
    from label_studio_sdk.core.api_error import ApiError

    before = client.projects.get(id=project_id).model_version
    if before == version:
        return None
    try:
        client.projects.update(id=project_id, model_version=version)
    except ApiError as e:
        if e.status_code == 400 and "model_version" in str(e.body):
            raise VersionNotStored(f"Label Studio project {project_id} has no prediction of {version!r} yet") from None
        raise
    log.info("Label Studio project %s: model_version %r -> %r (its Prediction score column follows it)",
             project_id, before, version)
    return before or ""
