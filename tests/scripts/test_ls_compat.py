"""scripts/ls_compat.py's own logic: which releases it picks and how it reads a run's results (the run
itself, against real Label Studio releases, is the script's job, not the suite's)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests import REPO


def _script():
    spec = importlib.util.spec_from_file_location("ls_compat", REPO / "scripts" / "ls_compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_newest_final_release_of_each_minor_in_the_range():
    listed = ("1.23.2, 1.23.1, 1.23.0, 1.22.0, 1.21.0, 1.20.0, 1.19.0, 1.18.0, 1.17.0, 1.14.0.post0, 1.14.0, "
              "1.13.1, 1.9.2.post0, 1.9.2").split(", ")
    ls_compat = _script()
    assert ls_compat.newest_per_minor(listed, "1.18", "1.23") == [
        "1.18.0", "1.19.0", "1.20.0", "1.21.0", "1.22.0", "1.23.2"]
    assert ls_compat.newest_per_minor(listed, "1.9", "1.14") == ["1.9.2", "1.13.1", "1.14.0"]
    assert ls_compat.newest_per_minor(["1.24.0rc1", "1.23.0.post1"], "1.23", "1.24") == []


def test_a_run_read_per_test_and_per_area(tmp_path):
    """A real pytest run's JUnit XML: a pass, a parametrized test with one failing case, a fixture error and
    a test that never ran, each where the table puts it."""
    (tmp_path / "test_fake.py").write_text('''
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("legacy token refused")

def test_interactive_context_prompt_and_drawn_rectangle():
    pass

@pytest.mark.parametrize("kind", ["identify", "autolabel"])
def test_annotation_webhook_then_prediction(kind):
    assert kind == "identify", "no webhook reached fit"

def test_import_into_label_studio(broken):
    pass

def test_not_in_the_subset():
    assert False
''')
    junit = tmp_path / "run.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                    str(tmp_path / "test_fake.py")], cwd=tmp_path, capture_output=True)
    ls_compat = _script()
    outcome = ls_compat.outcomes(junit)
    assert set(outcome) == {n.split("::")[1] for n in ls_compat.TESTS}
    assert outcome["test_interactive_context_prompt_and_drawn_rectangle"] == "pass"
    webhook = outcome["test_annotation_webhook_then_prediction"]
    assert webhook.startswith("failure[autolabel]:") and "no webhook reached fit" in webhook
    assert outcome["test_import_into_label_studio"].startswith("error:")
    assert "legacy token refused" in outcome["test_import_into_label_studio"]
    assert outcome["test_upload_with_personal_access_token"] == "not run"
    assert ls_compat.area_cell(outcome, "interactive context") == "pass"
    cell = ls_compat.area_cell(outcome, "webhooks reach fit")
    assert cell.startswith("FAIL (") and "test_a_late_or_repeated_webhook_changes_nothing: not run" in cell
    row = ls_compat.table([("1.99.0", "", outcome), ("1.98.0", "does not install: no wheel", None)]).splitlines()
    assert row[0].startswith("| Label Studio | Retrieve Predictions |") and len(row) == 4
    assert row[3] == "| 1.98.0 |" + " does not install: no wheel |" * len(ls_compat.AREAS)
