"""pipeline/labelstudio/lsapi.py: paging without asking past the last page, and the project's model_version."""
from types import SimpleNamespace

import pytest
from label_studio_sdk.core.api_error import ApiError

from pipeline.labelstudio import lsapi


def lister(n: int, total_field="total"):
    calls = []

    def list_method(page, page_size, **params):
        calls.append(page)
        start = (page - 1) * page_size
        if page > 1 and start >= n:
            raise AssertionError(f"page {page} asked: Label Studio answers 404 with a traceback")
        response = SimpleNamespace(**({total_field: n} if total_field else {}))
        return SimpleNamespace(items=list(range(start, min(n, start + page_size))), response=response)
    return list_method, calls


@pytest.mark.parametrize("n,total_field,pages", [(0, "total", [1]), (5, "total", [1, 2, 3]), (6, "total", [1, 2, 3]),
                                                 (6, "count", [1, 2, 3]), (5, None, [1, 2, 3])])
def test_items_never_asks_past_the_last_page(n, total_field, pages):
    method, calls = lister(n, total_field)
    assert list(lsapi.items(method, 2)) == list(range(n))
    assert calls == pages


def test_use_version_sets_it_once_label_studio_has_the_predictions():
    state = {"model_version": "label-factory", "stored": set()}

    def update(id, model_version):
        if model_version not in state["stored"]:
            raise ApiError(status_code=400, body={"validation_errors": {"model_version": ["doesn't exist"]}})
        state["model_version"] = model_version

    client = SimpleNamespace(projects=SimpleNamespace(
        get=lambda id: SimpleNamespace(model_version=state["model_version"]), update=update))
    with pytest.raises(lsapi.VersionNotStored):
        lsapi.use_version(client, 3, "v2")
    state["stored"].add("v2")
    assert lsapi.use_version(client, 3, "v2") == "label-factory"
    assert state["model_version"] == "v2" and lsapi.use_version(client, 3, "v2") is None


class TaskPages:
    """Label Studio's GET /api/tasks behind the SDK's HTTP client: 404 for a page past the last (or any page of
    an empty result), ``status`` for every request when set."""

    def __init__(self, n: int, status: int = 200):
        self.n, self.status, self.asked = n, status, []

    def request(self, path, method, params):
        assert (path, method) == ("api/tasks", "GET")
        self.asked.append(params)
        page, size = params["page"], params["page_size"]
        start = (page - 1) * size
        if self.status != 200:
            return SimpleNamespace(status_code=self.status, headers={}, json=lambda: {"detail": "no access"})
        if start >= self.n:
            return SimpleNamespace(status_code=404, headers={}, json=lambda: {"detail": "Invalid page."})
        tasks = [{"id": i} for i in range(start, min(self.n, start + size))]
        return SimpleNamespace(status_code=200, headers={}, json=lambda: {"tasks": tasks, "total": self.n})


def sdk_client(http):
    return SimpleNamespace(_client_wrapper=SimpleNamespace(httpx_client=http))


def test_task_json_pages_are_plain_dicts_and_never_past_the_last():
    http = TaskPages(5)
    got = list(lsapi.items(lsapi.task_json(sdk_client(http)), 2, project=3, fields="all", include="id"))
    assert got == [{"id": i} for i in range(5)]
    assert [p["page"] for p in http.asked] == [1, 2, 3] and http.asked[0]["project"] == 3
    http = TaskPages(4)
    assert len(list(lsapi.items(lsapi.task_json(sdk_client(http)), 2, project=3))) == 4
    assert [p["page"] for p in http.asked] == [1, 2]  # the total says page 2 was the last
    assert list(lsapi.items(lsapi.task_json(sdk_client(TaskPages(0))), 2, project=3)) == []  # page 1: 404


def test_task_json_refusals_are_the_sdks_api_error():
    with pytest.raises(ApiError) as e:
        list(lsapi.items(lsapi.task_json(sdk_client(TaskPages(5, status=403))), 2, project=3))
    assert e.value.status_code == 403 and e.value.body == {"detail": "no access"}
