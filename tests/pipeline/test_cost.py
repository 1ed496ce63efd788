"""The start-up cost estimate: minutes-per-image configurations are called out before any work starts."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from pipeline import cost
from pipeline.cascade import Pipeline
from pipeline.config import load_project, parse_project
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM

GFLOPS = 33.0  # a fixed machine speed keeps the test deterministic (the probe measures 30-200 here)


def drones(**grounder):
    cfg = load_project("projects/drones.yaml")
    data = cfg.model_dump(mode="json", by_alias=False)
    data["providers"]["grounder"].update(backend="torch", device="cpu", **grounder)
    return parse_project(data)


def test_falcon_on_a_cpu_is_called_slow_with_its_seconds():
    est = cost.estimate(drones(), gflops=GFLOPS)
    ground = next(s for s in est.stages if s.stage == "ground")
    assert ground.seconds is not None and est.slow
    assert "4 queries" in ground.note and "max_dimension 512" in ground.note  # the CPU default
    assert not est.known  # filter/verify run on a remote server: not estimated, and said so
    assert "at least ~" in est.summary()
    assert "not estimated (served by http://127.0.0.1:8000/v1; measured from the first images)" in est.summary()


def test_estimate_follows_resolution_superlinearly():
    small = cost.estimate(drones(max_dimension=512), gflops=GFLOPS).per_image
    big = cost.estimate(drones(max_dimension=1024), gflops=GFLOPS).per_image
    assert big > 4 * small  # 4x the tokens, and attention grows with their square
    half = cost.estimate(drones(max_dimension=1024), gflops=2 * GFLOPS).per_image
    assert half == pytest.approx(big / 2)


def test_transformers_vlm_estimated_from_its_config(tiny_qwen_dir):
    cfg = parse_project({"project_name": "t", "target_object": "cat", "stages": {"ground": False},
                         "providers": {"vlm": {"kind": "transformers", "model": str(tiny_qwen_dir)}}})
    est = cost.estimate(cfg, gflops=GFLOPS)
    assert [s.stage for s in est.stages] == ["filter", "verify"] and est.known and not est.slow
    assert "1036 image tokens" in est.stages[0].note and "256 image tokens" in est.stages[1].note
    smaller = parse_project({**cfg.model_dump(mode="json", by_alias=False), "budgets": {"filter_pixels": 200_704}})
    assert cost.estimate(smaller, gflops=GFLOPS).stages[0].seconds < est.stages[0].seconds


def test_matmul_probe_measures_something():
    assert 0.1 < cost.matmul_gflops("cpu") < 1e5
    assert 0.01 < cost.matmul_gflops("cpu", "bf16") < 1e5


def test_each_stage_is_priced_at_its_dtypes_speed(tiny_qwen_dir, monkeypatch):
    """The VLM in bf16 and the grounder in fp32: each stage divides by its own dtype's measured speed."""
    rates = {"fp32": 100.0, "bf16": 400.0}
    monkeypatch.setattr(cost, "matmul_gflops", lambda device="cpu", dtype="fp32": rates[dtype])
    data = {"project_name": "t", "target_object": "cat", "falcon_queries": ["cat"],
            "providers": {"vlm": {"kind": "transformers", "model": str(tiny_qwen_dir), "device": "cpu"},
                          "grounder": {"kind": "falcon", "backend": "torch", "device": "cpu", "dtype": "fp32"}}}
    fp32 = cost.estimate(parse_project(data))
    data["providers"]["vlm"]["dtype"] = "bf16"
    mixed = cost.estimate(parse_project(data))
    assert mixed.rates == {"bf16": 400.0, "fp32": 100.0} and fp32.rates == {"fp32": 100.0}
    for stage in ("filter", "verify"):
        a, b = (next(s for s in e.stages if s.stage == stage) for e in (fp32, mixed))
        assert b.seconds == pytest.approx(a.seconds / 4) and b.note.endswith(", bf16")
    a, b = (next(s for s in e.stages if s.stage == "ground") for e in (fp32, mixed))
    assert a.seconds == b.seconds and "bf16" not in b.note
    assert "bf16 ~400 GFLOP/s, fp32 ~100 GFLOP/s measured" in mixed.summary()


def test_the_first_images_real_seconds_are_logged_once(caplog):
    seen = cost.Observed(after=3)
    with caplog.at_level(logging.INFO, logger="pipeline.cost"):
        assert seen.add({"filter": 2.0}) is None  # filtered out: only the filter ran
        assert seen.add({"filter": 3.0, "ground": 10.0}) is None
        text = seen.add({"filter": 4.0, "ground": 12.0, "verify": 1.0})
        assert seen.add({"filter": 100.0}) is None
    assert text == ("measured on the first 3 images: ~15 s per image (filter 3.00 s; ground 11.00 s; verify 1.00 s; "
                    "medians, cached answers included)")
    assert [r.getMessage() for r in caplog.records] == [text]


def test_pipeline_load_warns_before_loading_models(monkeypatch, caplog):
    events = []
    monkeypatch.setattr(cost, "matmul_gflops", lambda device="cpu", dtype="fp32": GFLOPS)
    from pipeline.providers import registry
    monkeypatch.setattr(registry, "get_grounder", lambda cfg: events.append("grounder loaded") or ScriptedGrounder([]))

    class Recorder(logging.Handler):
        def emit(self, record):
            events.append(f"{record.levelname}: {record.getMessage()}")

    handler = Recorder()
    logging.getLogger("pipeline.cost").addHandler(handler)
    try:
        Pipeline(drones(), vlm=ScriptedVLM(lambda im, q: 1.0)).load()
    finally:
        logging.getLogger("pipeline.cost").removeHandler(handler)
    assert events[-1] == "grounder loaded"
    assert events[0].startswith("WARNING: SLOW CONFIGURATION: expected at least ~") and "min per image" in events[0]


def test_up_prints_the_estimate_before_starting_anything(monkeypatch, capsys, tmp_path):
    from pipeline.stack import up
    monkeypatch.setattr(cost, "matmul_gflops", lambda device="cpu", dtype="fp32": GFLOPS)
    monkeypatch.setattr(up, "check_real_models", lambda cfg, masks=None: None)
    project = tmp_path / "drones.yaml"
    project.write_text(open("projects/drones.yaml").read().replace("backend: auto", "backend: torch"))

    def refuse(*a, **kw):
        raise RuntimeError("stop before Label Studio")
    monkeypatch.setattr(up, "start_label_studio", refuse)
    args = SimpleNamespace(project=str(project), root=str(tmp_path / "root"), models="real", port=None, host=None,
                           backend_port=None, timeout=1, tiny_cache=str(tmp_path / "tiny"), masks=None)
    with pytest.raises(RuntimeError, match="stop before Label Studio"):
        up.run_up(args)
    out = capsys.readouterr().out
    assert out.index("SLOW CONFIGURATION") < out.index("starting Label Studio")
