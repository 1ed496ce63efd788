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
