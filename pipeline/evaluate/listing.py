"""Fetch a project's reviewed tasks (annotations + predictions) from Label Studio, as plain task dicts.

Three ways, compared on a 50,000-task project by benchmarks/evaluate_scale.py (README):

- ``pages`` (default): ``GET /api/tasks`` page by page through the SDK's HTTP client (its auth,
  token refresh and retries) with ``fields=all`` cut down by ``include=id,annotations,predictions``
  (+ ``expand=annotations``, without which ``include`` reduces annotations to their ids) and a
  Data Manager filter ``total_annotations > 0``, so unreviewed tasks never travel. The JSON is parsed
  as plain dicts; memory holds one page.
- ``sdk``: the same request through ``client.tasks.list`` (pages of typed objects, dumped to dicts).
- ``export``: an export snapshot (``client.projects.exports.create`` with full predictions and
  ``only_with_annotations``, then ``download``, then the snapshot is deleted). Without a job queue
  (Redis) Label Studio builds the snapshot inside the POST, so that request may take minutes. The plain
  ``GET /api/projects/{id}/export?exportType=JSON`` cannot be used: it lists predictions by id only.
  The whole file is held in memory."""
from __future__ import annotations

import json
import time
from typing import Callable, Iterator, Optional

METHODS = ("pages", "sdk", "export")
INCLUDE = "id,annotations,predictions"
ANNOTATED = json.dumps({"filters": {"conjunction": "and", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}]}})


class ListingError(RuntimeError):
    pass


def _params(project_id: int, page_size: int, include: str = INCLUDE) -> dict:
    return {"project": project_id, "fields": "all", "include": include, "expand": "annotations",
            "page_size": page_size, "query": ANNOTATED, "resolve_uri": False}


def list_pages(client, project_id: int, page_size: int = 1000, on_total: Optional[Callable[[int], None]] = None,
               include: str = INCLUDE) -> Iterator[dict]:
    """``include``: the task fields to send (calibrate adds ``data`` for the image URL)."""
    http = client._client_wrapper.httpx_client  # the SDK's authenticated client (token refresh, retries)
    page = 1
    while True:
        r = http.request("api/tasks", method="GET", params={**_params(project_id, page_size, include), "page": page})
        if r.status_code == 404 and page > 1:  # past the last page
            return
        if r.status_code >= 400:
            raise ListingError(f"GET /api/tasks?project={project_id}&page={page}: HTTP {r.status_code}: "
                               f"{r.text[:300]}")
        body = r.json()
        if page == 1 and on_total is not None:
            on_total(int(body.get("total") or 0))
        tasks = body.get("tasks") or []
        yield from tasks
        if len(tasks) < page_size:
            return
        page += 1


def list_sdk(client, project_id: int, page_size: int = 1000, on_total=None) -> Iterator[dict]:
    pager = client.tasks.list(project=project_id, fields="all", include=INCLUDE, page_size=page_size, query=ANNOTATED,
                              resolve_uri=False,
                              request_options={"additional_query_parameters": {"expand": "annotations"}})
    for t in pager:
        yield t.model_dump(include={"id", "annotations", "predictions"}, mode="json")


def list_export(client, project_id: int, page_size: int = 0, on_total=None, timeout: float = 3600) -> Iterator[dict]:
    exports = client.projects.exports
    slow = {"timeout": timeout, "max_retries": 0}  # without a job queue Label Studio builds it inside the POST
    snap = exports.create(project_id, title="label-factory evaluate",
                          task_filter_options={"only_with_annotations": True},
                          serialization_options={"predictions": {"only_id": False},
                                                 "annotations__completed_by": {"only_id": True}},
                          request_options=slow)
    try:
        t0 = time.monotonic()
        while snap.status not in ("completed", "failed"):
            if time.monotonic() - t0 > timeout:
                raise ListingError(f"export snapshot {snap.id} still {snap.status} after {timeout:.0f} s")
            time.sleep(0.5)
            snap = exports.get(project_id, export_pk=snap.id)
        if snap.status == "failed":
            raise ListingError(f"Label Studio failed to build export snapshot {snap.id}")
        tasks = json.loads(b"".join(exports.download(project_id, export_pk=snap.id, export_type="JSON",
                                                     request_options=slow)))
    finally:
        try:
            exports.delete(project_id, export_pk=snap.id)
        except Exception:  # noqa: BLE001 - a leftover snapshot is harmless
            pass
    if on_total is not None:
        on_total(len(tasks))
    yield from tasks


def list_reviewed_tasks(client, project_id: int, method: str = "pages", page_size: int = 1000,
                        on_total: Optional[Callable[[int], None]] = None) -> Iterator[dict]:
    """The project's tasks that have an annotation, with their annotations and predictions."""
    fn = {"pages": list_pages, "sdk": list_sdk, "export": list_export}.get(method)
    if fn is None:
        raise ListingError(f"unknown listing method {method!r} (choose from {', '.join(METHODS)})")
    return fn(client, project_id, page_size, on_total=on_total)
