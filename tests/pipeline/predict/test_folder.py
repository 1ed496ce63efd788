"""pipeline/predict/folder.py's outputs: a write that dies midway leaves the previous run's files and nothing else."""
import json

from pipeline.predict.folder import BatchOutput, write_outputs
from tests.dying_writes import assert_died_of_a_full_disk, run_until_disk_full, stray_files


def test_outputs_written_until_the_disk_is_full_leave_the_previous_ones(tmp_path):
    out = tmp_path / "out"
    write_outputs(BatchOutput({"images": ["first"]}, [{"id": 1}], {"run": 1}), out)
    before = {p.name: p.read_text() for p in out.iterdir()}
    proc = run_until_disk_full(
        "from pathlib import Path\nfrom pipeline.predict.folder import BatchOutput, write_outputs",
        f"write_outputs(BatchOutput({{'images': ['x' * 100 for _ in range(2000)]}}, [], {{'run': 2}}), "
        f"Path({str(out)!r}))", limit=50_000)
    assert_died_of_a_full_disk(proc)
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert json.loads(before["run.json"]) == {"run": 1}
    assert stray_files(out, set(before)) == []  # no half-written temp file left behind
