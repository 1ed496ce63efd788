"""Label Studio's own screens with our predictions, in a real browser: the judge of what the frontend sends.

Debian's Chromium (/usr/bin/chromium, driven by the playwright package; never `playwright install`)
logs in to a real Label Studio 1.23 whose project the backend (real gunicorn, tiny random-weight
models, every gate open) pre-annotated through *Retrieve Predictions*:

* the Data Manager's *Prediction score* column shows each task's score, and *Order by → Prediction score*
  puts six tasks of distinct scores in their score order, then its direction button in the reverse order
  (in 1.23 clicking the column's header does not sort);
* a pre-annotated task lists its predicted regions with their scores;
* with Auto-Annotation on, one Auto-Detect rectangle yields exactly one suggestion although Label
  Studio sends the predicted regions (and, the second time, the suggestion accepted before) with it,
  and accepting it adds exactly one region.

Random weights: boxes and scores mean nothing; the flow, counts and numbers shown are asserted."""
from __future__ import annotations

import json
import time

import pytest
import requests

from pipeline.config import load_project
from pipeline.labelstudio.labeling_config import labeling_config
from tests.doubles.images import sign_jpeg
from tests.fixtures_browser import COLUMN_JS as _COLUMN_JS
from tests.fixtures_browser import column as _column
from tests.ls_helpers import start_backend, tiny_project_yaml, wait_for_project_version

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")

IMAGE_SIZE = (320, 240)
N_TASKS = 6  # distinct scores, in an order that is neither the tasks' ids nor their reverse


@pytest.fixture(scope="module")
def predicted_project(label_studio, tiny_qwen_dir, tiny_owlv2_dir, tmp_path_factory):
    """Six uploaded images, the backend connected (interactive) and its predictions retrieved."""
    work = tmp_path_factory.mktemp("browser")
    project_yaml = tiny_project_yaml(work / "browser-signs.yaml", "browser-signs", tiny_qwen_dir, tiny_owlv2_dir,
                                     max_boxes=2)
    backend = start_backend(work, project_yaml, label_studio.url, label_studio.token)
    try:
        ls = label_studio.client()
        project = ls.projects.create(title="browser signs", label_config=labeling_config(load_project(project_yaml)))
        files = [(f"file{i}", (f"img{i}.jpg", sign_jpeg(i, IMAGE_SIZE), "image/jpeg")) for i in range(N_TASKS)]
        r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                          headers=label_studio.headers(), timeout=60)
        assert r.status_code == 201, r.text
        ml = ls.ml.create(project=project.id, url=backend.url, title="label-factory", is_interactive=True)
        ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                          selected_items={"all": True, "excluded": []})
        version = ls.ml.get(ml.id).model_version
        predictions = {}
        for task in ls.tasks.list(project=project.id, page=1, page_size=N_TASKS).items:
            (pred,) = ls.predictions.list(task=task.id)
            assert pred.model_version == version and pred.result
            predictions[task.id] = pred
        assert len(predictions) == N_TASKS
        assert wait_for_project_version(label_studio, project.id, version) == version
        yield project, ml, predictions, backend
    finally:
        backend.stop()


def test_data_manager_scores_and_sorts_predictions(page, label_studio, predicted_project):
    project, _, predictions, _ = predicted_project
    page.goto(f"{label_studio.url}/projects/{project.id}/data")
    page.get_by_text("Columns", exact=True).first.click()
    page.get_by_text("Prediction score", exact=True).first.click()  # hidden by default
    page.keyboard.press("Escape")
    header = page.locator(".lsf-th-content", has_text="Prediction score")
    header.wait_for()
    try:  # the rows are fetched again with the new column
        page.wait_for_function(_COLUMN_JS.replace("return rows", "return rows.every(Boolean) && rows"),
                               arg="Prediction score", timeout=20_000)
    except sync_api.TimeoutError:
        pass  # the assertion below shows what is there
    ids = [int(v) for v in _column(page, "ID")]

    shown = dict(zip(ids, _column(page, "Prediction score")))
    assert set(shown) == set(predictions)
    for task_id, text in shown.items():
        assert text and float(text) == pytest.approx(predictions[task_id].score, abs=1e-3), shown

    by_score = sorted(predictions, key=lambda t: predictions[t].score)
    assert len({predictions[t].score for t in by_score}) == N_TASKS, predictions  # one order only
    assert by_score not in (sorted(ids), sorted(ids, reverse=True)), "the scores would not show a sort"
    page.get_by_role("button", name="Order by").click()
    page.locator(".lsf-dropdown.lsf-visible .lsf-menu-dm__item", has_text="Prediction score").click()
    _wait_for_ids(page, by_score)  # ascending: the least certain first
    page.get_by_role("button", name="Sort descending").click()
    _wait_for_ids(page, by_score[::-1])


def _wait_for_ids(page, expected: list[int]) -> None:
    """The ID column shows ``expected`` top to bottom (within 20 s), else fails with what it shows."""
    try:
        page.wait_for_function("ids => JSON.stringify((" + _COLUMN_JS + ")('ID')) === JSON.stringify(ids)",
                               arg=[str(i) for i in expected], timeout=20_000)
    except sync_api.TimeoutError:
        pass
    assert [int(v) for v in _column(page, "ID")] == expected


def test_predicted_regions_with_scores_and_one_suggestion_per_rectangle(page, label_studio, predicted_project):
    project, ml, predictions, backend = predicted_project
    task_id, pred = next(iter(predictions.items()))
    page.goto(f"{label_studio.url}/projects/{project.id}/data?task={task_id}")
    regions = page.locator(".lsf-outliner-item")
    page.get_by_test_id("bottombar-auto-annotation-toggle").wait_for()
    page.wait_for_function("n => document.querySelectorAll('.lsf-outliner-item').length === n", arg=len(pred.result))

    # the pre-annotated task lists the predicted regions, each with its score
    listed = [regions.nth(i).inner_text().split("\n") for i in range(regions.count())]
    assert len(listed) == len(pred.result), listed
    assert sorted(row[-1] for row in listed) == sorted(f"{r['score']:.2f}" for r in pred.result), listed
    assert all("Stop Sign" in row for row in listed)

    page.get_by_test_id("bottombar-auto-annotation-toggle").click()
    canvas = page.locator("canvas").first.bounding_box()
    smart_tool = page.locator(".lsf-tool_smart").first  # Auto-Detect rectangle
    label = page.locator(".lsf-label_clickable", has_text="Stop Sign")
    for round_ in (1, 2):
        before = regions.count()
        page.get_by_label("Hide all regions").click()  # draw on free canvas, not on a region
        if "active" not in (smart_tool.get_attribute("class") or ""):
            smart_tool.click()
        label.click()
        x0 = canvas["x"] + canvas["width"] * (0.15 if round_ == 1 else 0.55)
        y0 = canvas["y"] + canvas["height"] * 0.15
        with page.expect_response(lambda r: "/interactive-annotating" in r.url) as exchange:
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + 60, y0 + 50, steps=5)
            page.mouse.move(x0 + 120, y0 + 100, steps=5)
            page.mouse.up()
        sent, answer = json.loads(exchange.value.request.post_data), exchange.value.json()
        page.get_by_text("1 suggestions").wait_for()  # Label Studio's own count of what came back
        origins = [r.get("origin") for r in sent["context"]["result"]]
        assert origins.count("prediction") == len(pred.result) and len(origins) == len(pred.result) + round_
        (suggestion,) = answer["data"]["result"]
        drawn = sent["context"]["result"][-1]["value"]
        assert suggestion["value"]["x"] == pytest.approx(drawn["x"], abs=0.01)
        assert suggestion["value"]["rectanglelabels"] == ["Stop Sign"] and 0 <= suggestion["score"] <= 1
        page.get_by_test_id("bottombar-accept-suggestions-button").click()
        page.wait_for_function("n => document.querySelectorAll('.lsf-outliner-item').length >= n", arg=before + 1)
        time.sleep(0.5)
        assert regions.count() == before + 1  # exactly one region added, no copies of predicted ones
        assert regions.nth(before).inner_text().split("\n")[-1] == f"{suggestion['score']:.2f}"
    log = backend.log_path.read_text()
    assert log.count("interactive: project") >= 2 and "drawn box Stop Sign" in log and "1 box(es) suggested" in log
