"""`label-factory doctor`: the machine, each model's dtype with its reason, and the per-photo estimate."""
from __future__ import annotations

import json

from pipeline import hardware
from pipeline.cli import main


def test_doctor_reports_the_machine_the_dtypes_and_the_estimate(capsys, monkeypatch):
    monkeypatch.setenv("LF_DTYPE", "bf16")
    assert main(["doctor", "--project", "projects/drones.yaml", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    m = hardware.machine()
    assert r["machine"]["cpu"] == m.cpu and r["machine"]["physical_cores"] == m.physical_cores
    assert set(r["machine"]["flags"]) == set(m.flags)
    assert r["dtypes"]["vlm"]["dtype"] == "server"  # drones' VLM is an OpenAI-compatible server
    assert r["dtypes"]["grounder"] == {"dtype": "bf16", "reason": "LF_DTYPE says bf16"}
    assert r["model_version"].endswith("-bf16")
    assert r["estimate"]["per_image_seconds"] > 0 and "bf16" in r["estimate"]["summary"]
    assert r["estimate_fp32"]["per_image_seconds"] > 0  # what the same project costs in fp32, beside it
    assert set(r["cpu_matmul_gflops"]) == {"fp32", "bf16"}

    monkeypatch.setenv("LF_DTYPE", "fp32")
    assert main(["doctor", "--project", "projects/drones.yaml"]) == 0
    text = capsys.readouterr().out
    assert f"CPU      {m.cpu}" in text and "grounder   fp32  LF_DTYPE says fp32" in text
    assert "all in fp32" not in text  # nothing to compare with
