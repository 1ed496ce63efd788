"""Label Studio API calls that the batch job (``predict``), ``up`` and the ML backend share, through
label-studio-sdk. It must not start Label Studio (pipeline/stack/ls_server.py does) nor hold
credentials (pipeline/labelstudio/client.py does).

* ``items``: every item of a paginated list, never asking for a page past the last one.
  label-studio-sdk 2.1's pager treats any non-empty page as having a next one, and Label Studio
  answers that request with 404 and a traceback in its log. Every paged list label-factory reads goes
  through it: the SDK's typed lists (``client.tasks.list``, ``client.projects.list``) or
  ``task_json``, the same ``GET /api/tasks`` pages as plain JSON dicts (no typed objects: evaluate
  and calibrate read whole projects, and the SDK's objects cost ~1.4x the listing time there).
* ``use_version``: make a project's ``model_version`` the version of the predictions label-factory
  wrote. Label Studio 1.23 (community feature flags) scores the Data Manager's *Prediction score*
  column, sorts it, shows predictions in the labeling stream and preselects "create annotations from
  predictions" only for predictions of the project's ``model_version``
  (``data_manager/managers.py: annotate_predictions_score``, ``tasks/models.py:
  get_predictions_for_prelabeling``), and it sets that field to the ML backend's *title* when the
  backend is connected (``ml/api.py: MLBackendListAPI.perform_create``), a version no prediction
  has. It accepts a new value only once predictions of it are stored
  (``projects/serializers.py: validate_model_version``).
* ``most_uncertain`` / ``uncertain_tab``: the unlabeled tasks whose prediction score (label-factory writes
  the task's certainty, pipeline/certainty.py) is lowest, as the Data Manager sorts them, and a Data Manager
  tab that shows them in that order (its *Label All Tasks* follows the tab's order)."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Callable, Iterator, Optional

from pipeline.labelstudio import client as credentials

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


def task_json(client) -> Callable:
    """A page source for ``items``: ``GET /api/tasks`` through ``client``'s authenticated HTTP client, each page
    the API's JSON (tasks as plain dicts) with its ``total``. The parameters are the API's (``project``,
    ``fields``, ``include``, ``expand``, ``query``, ``resolve_uri``, ...); a first page Label Studio answers
    404 (a filter nothing matches, an empty project) is an empty page. Any other refusal is the SDK's
    ``ApiError``, as a typed list raises it."""
    from label_studio_sdk.core.api_error import ApiError

    http = credentials.http(client)

    def list_method(page: int, page_size: int, **params):
        r = http.request("api/tasks", method="GET", params={**params, "page": page, "page_size": page_size})
        if r.status_code == 404 and page == 1:
            return SimpleNamespace(items=[], response=SimpleNamespace(total=0))
        if r.status_code >= 400:
            raise ApiError(status_code=r.status_code, headers=dict(r.headers), body=_body(r))
        body = r.json()
        return SimpleNamespace(items=body.get("tasks") or [], response=SimpleNamespace(total=body.get("total")))
    return list_method


def _body(response):
    try:
        return response.json()
    except ValueError:
        return response.text[:300]


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


UNCERTAIN_TAB = "Most uncertain first (label-factory)"
UNCERTAIN_ORDER = ["tasks:predictions_score"]  # ascending: the least certain first
UNLABELED_SCORED = {"conjunction": "and", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
    {"filter": "filter:tasks:predictions_score", "operator": "empty", "type": "Number", "value": False}]}


def most_uncertain(client, project_id: int, k: int) -> list[dict]:
    """The ``k`` unlabeled tasks with the lowest Prediction score (of the project's model_version), lowest
    first, as Label Studio's Data Manager sorts them: ``{"id", "score"}`` each."""
    query = json.dumps({"filters": UNLABELED_SCORED, "ordering": UNCERTAIN_ORDER})  # the Data Manager's own query
    page = task_json(client)(1, k, project=project_id, fields="all", query=query, resolve_uri=False)
    return [{"id": t["id"], "score": t.get("predictions_score")} for t in page.items][:k]


def uncertain_tab(client, project_id: int) -> int:
    """Create (or bring up to date) the Data Manager tab listing unlabeled tasks, least certain first; its id."""
    data = {"title": UNCERTAIN_TAB, "ordering": UNCERTAIN_ORDER, "filters": UNLABELED_SCORED}
    for view in client.views.list(project=project_id):
        if (view.data or {}).get("title") == UNCERTAIN_TAB:
            client.views.update(str(view.id), project=project_id, data={**(view.data or {}), **data})
            return view.id
    return client.views.create(project=project_id, data=data).id
