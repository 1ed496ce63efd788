"""Start Training in Label Studio's own screens, in a real browser (Debian's Chromium through playwright).

Settings -> Model -> the connected backend's menu -> Start Training -> the modal's Start Training: Label Studio
sends START_TRAINING, the backend (real gunicorn) trains a student of seconds in the background and promotes it
(nothing was served before); its /metrics, opened in the browser, says so; then the Data Manager's Retrieve
Predictions gets predictions whose model_version, shown in the *Prediction model versions* column, is the
promoted student's. The student's boxes mean nothing (1 epoch from random weights); the flow is asserted."""
from __future__ import annotations

import json

import pytest

from tests.fixtures_browser import column
from tests.ls_helpers import start_backend
from tests.training_helpers import kill_training, reviewed_project, student_yaml, tiny_training_env, wait_for_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_project(label_studio, tmp_path_factory):
    work = tmp_path_factory.mktemp("browser-training")
    project_yaml = student_yaml(work / "browser-train.yaml", "browser-train", work / "served" / "student.pt")
    backend = start_backend(work, project_yaml, label_studio.url, label_studio.token,
                            **tiny_training_env(work / "yolo-config"))
    status = None
    try:
        project, tasks = reviewed_project(label_studio, "browser training", project_yaml, n=12)
        label_studio.client().ml.create(project=project.id, url=backend.url, title="label-factory")
        yield project, tasks, backend
        status = backend.last_status if hasattr(backend, "last_status") else None
    finally:
        kill_training(status)
        backend.stop()


def test_start_training_in_settings_then_predictions_of_the_promoted_student(page, label_studio, trained_project):
    project, tasks, backend = trained_project
    page.goto(f"{label_studio.url}/projects/{project.id}/settings/ml")
    page.get_by_text("Connected", exact=True).first.wait_for()
    page.get_by_label("Machine learning model options").first.click()
    page.get_by_text("Start Training", exact=True).first.click()  # the card's menu item
    page.get_by_text("Start Model Training", exact=True).wait_for()  # Label Studio's modal
    page.get_by_text("You're about to manually trigger").wait_for()
    with page.expect_response(lambda r: "/train" in r.url and r.request.method == "POST") as sent:
        page.get_by_role("button", name="Start Training", exact=True).last.click()
    assert sent.value.status == 200
    page.get_by_text("Request Sent!").wait_for()

    status = wait_for_training(f"{backend.url}/metrics", project.id)
    backend.last_status = status
    assert status["state"] == "promoted", status
    version = status["outcome"]["model_version"]
    assert version != status["outcome"]["model_version_before"] and version.endswith("+student-"
                                                                                     + status["outcome"]
                                                                                     ["weights_sha256"][:12])
    page.goto(f"{backend.url}/metrics")  # the backend's own report, as a person would open it
    shown = json.loads(page.locator("body").inner_text())["training"][str(project.id)]
    assert shown["state"] == "promoted" and shown["epoch"] == shown["epochs"] == 1 and shown["losses"]

    page.goto(f"{label_studio.url}/projects/{project.id}/data")
    page.get_by_label("Select all rows").first.click()  # every task
    actions = page.get_by_label("Tasks Actions")  # the selection's actions menu, titled "12 Tasks"
    page.wait_for_function("n => [...document.querySelectorAll('[aria-label=\"Tasks Actions\"]')]"
                           ".some(b => b.innerText.trim() === n + ' Tasks')", arg=len(tasks))
    actions.click()
    page.get_by_text("Retrieve Predictions", exact=True).first.click()
    with page.expect_response(lambda r: "/api/dm/actions" in r.url and r.request.method == "POST",
                              timeout=120_000) as done:
        page.get_by_test_id("dialog-ok-button").click()  # Label Studio's confirmation
    assert done.value.status == 200

    page.reload()
    page.get_by_text("Columns", exact=True).first.click()
    page.get_by_text("Prediction model versions", exact=True).first.click()  # hidden by default
    page.keyboard.press("Escape")
    page.locator(".lsf-th-content", has_text="Prediction model versions").wait_for()
    try:
        page.wait_for_function("""v => { const heads = [...document.querySelectorAll('.lsf-table-head > *')];
            const i = heads.findIndex(h => h.innerText.trim() === 'Prediction model versions');
            const rows = [...document.querySelectorAll('[data-testid="table-row"]')];
            return rows.length && rows.every(r => r.querySelectorAll(':scope > .lsf-table__cell')[i]
                .innerText.includes(v)); }""", arg=version, timeout=30_000)
    except Exception:  # noqa: BLE001 - playwright's timeout: the assertion below shows what is there
        pass
    cells = column(page, "Prediction model versions")
    assert len(cells) == len(tasks) and all(c == version for c in cells), (version, cells)
