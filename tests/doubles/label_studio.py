"""A fake of the slice of label_studio_sdk.LabelStudio the predict jobs use (pipeline/predict/job.py,
ray_job.py, writer.py), for the fast tests: tasks listed page by page with the predictions stored on them,
bulk and single prediction writes that can fail the ways Label Studio's do, and the project's model_version.
Label Studio's refusals are label-studio-sdk's own ``ApiError`` with the bodies Label Studio 1.23 sends, so
the code under test takes the paths it takes against a real one. The slow tests run the same code against a
real Label Studio."""
from __future__ import annotations

from types import SimpleNamespace

from label_studio_sdk.core.api_error import ApiError

from pipeline.predict.runner import TaskOutcome


def refused(detail) -> ApiError:
    """A 400 answer as label-studio-sdk raises it."""
    return ApiError(status_code=400, headers={"content-type": "application/json"}, body=detail)


class FakeLabelStudio:
    """Label Studio with one project (``label_config``) holding ``tasks`` (``{"id", "data", "predictions"}``).

    ``refuse``: tasks whose prediction Label Studio refuses: a bulk write holding one is answered 400 (as
    Label Studio answers a task it cannot find) and so is a single create; ``refuse_bulk``: every bulk
    write is answered 400; ``drop``: tasks a bulk write silently leaves out (created < sent, as Label
    Studio does with predictions its config check rejects; a task in ``refuse`` too is only refused
    singly); ``lose``: bulk writes whose answer is lost AFTER they were stored (a read timeout);
    ``lose_unstored``: bulk writes lost BEFORE they were stored (a connection reset)."""

    def __init__(self, tasks=(), label_config="", *, titles=None, lose=0, lose_unstored=0, refuse_bulk=False,
                 drop=(), refuse=()):
        self.task_rows = [{k: v for k, v in t.items() if k != "predictions"} for t in tasks]
        self.stored: dict = {t["id"]: list(t.get("predictions") or []) for t in tasks if t.get("predictions")}
        self.lose, self.lose_unstored, self.refuse_bulk = lose, lose_unstored, refuse_bulk
        self.drop, self.refuse = set(drop), set(refuse)
        self.created: list[dict] = []  # every prediction stored by a write, in order
        self.bulk_sizes: list[int] = []
        self.singles: list = []  # task ids of single creates
        self.list_calls: list[dict] = []
        self.model_version = "label-factory"  # Label Studio sets the backend's title on connect
        titles = {7: "job-signs", 8: "other"} if titles is None else titles
        self.projects = SimpleNamespace(
            get=lambda id: SimpleNamespace(id=id, label_config=label_config, task_number=len(self.task_rows),
                                           model_version=self.model_version),
            list=lambda page, page_size, **kw: page_of(
                [SimpleNamespace(id=i, title=t) for i, t in titles.items()], page, page_size),
            update=self._update, import_predictions=self._bulk)
        self.tasks = SimpleNamespace(list=self._list)
        self.predictions = SimpleNamespace(create=self._create, list=lambda task: [
            SimpleNamespace(model_version=p["model_version"]) for p in self.stored.get(task, [])])

    def _list(self, page=1, page_size=100, **kw):  # a snapshot of one page, like a page from the API
        self.list_calls.append({"page": page, "page_size": page_size, **kw})
        rows = [dict(t, predictions=[{"model_version": p["model_version"]} for p in self.stored.get(t["id"], [])])
                for t in self.task_rows]
        return page_of(rows, page, page_size)

    def _update(self, id, model_version):
        if not any(p["model_version"] == model_version for ps in self.stored.values() for p in ps):
            # as Label Studio's projects/serializers.py: validate_model_version answers
            raise refused({"validation_errors": {"model_version": [
                "Model version doesn't exist either as live model or as static predictions."]}})
        self.model_version = model_version

    def _store(self, p: dict) -> None:
        p = dict(p)
        self.stored.setdefault(p["task"], []).append(p)
        self.created.append(p)

    def _bulk(self, *, id, request):
        self.bulk_sizes.append(len(request))
        if self.refuse_bulk or any(p["task"] in self.refuse - self.drop for p in request):
            raise refused("invalid prediction")
        if self.lose_unstored:
            self.lose_unstored -= 1
            raise ConnectionResetError("connection reset by peer")
        kept = [p for p in request if p["task"] not in self.drop]
        for p in kept:
            self._store(p)
        if self.lose:
            self.lose -= 1
            raise TimeoutError("read timed out")
        return SimpleNamespace(created=len(kept))

    def _create(self, **p):
        self.singles.append(p["task"])
        if p["task"] in self.refuse:
            raise refused(f"task {p['task']}: result does not match the labeling config")
        self._store(p)


def page_of(rows: list, page: int, page_size: int):
    """One page as label-studio-sdk returns it (a pager with .items and the response's total); Label Studio
    answers a page past the last one with 404."""
    if page > 1 and (page - 1) * page_size >= len(rows):
        raise AssertionError(f"asked for page {page} past the last one (Label Studio answers 404)")
    return SimpleNamespace(items=rows[(page - 1) * page_size:page * page_size],
                           response=SimpleNamespace(total=len(rows)))


def outcome(task_id, n_boxes=1, version="v1"):
    """A finished task with ``n_boxes`` rectangles of the ``label`` control."""
    result = [{"from_name": "label", "to_name": "image", "type": "rectanglelabels",
               "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["Stop Sign"]}}] * n_boxes
    return TaskOutcome(task_id, {"result": result, "model_version": version, "score": 0.5})


def webhook(action: str, project_id: int, task: dict, annotation: dict) -> dict:
    """A Label Studio annotation webhook body (as the ML backend's /webhook gets it, 'action' included)."""
    return {"action": action,
            "annotation": {"completed_by": 1, "was_cancelled": False, "ground_truth": False,
                           "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                           "lead_time": 3.2, "task": task["id"], "project": project_id, **annotation},
            "task": {"is_labeled": True, "overlap": 1, "project": project_id, "meta": {}, **task},
            "project": {"id": project_id, "title": "cards", "label_config": "<View/>", "task_number": 3,
                        "total_annotations_number": 1}}
