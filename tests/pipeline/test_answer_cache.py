"""The answer cache (pipeline/answer_cache.py): keys, what a re-run asks the models, the bound, and
writers in several processes. Providers are scripted (tests/doubles/providers.py) so every model call is counted."""
from __future__ import annotations

import json
import logging
import multiprocessing
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import answer_cache, cli
from pipeline.answer_cache import AnswerStore, CachedGrounder, CachedVLM
from pipeline.cascade import Pipeline
from pipeline.config import parse_project
from pipeline.providers import registry
from pipeline.providers.base import YesNo
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM

PROJECT = {"project_name": "cache-signs", "target_object": "stop sign", "label": "Stop Sign",
           "falcon_queries": ["stop sign"],
           "thresholds": {"filter": 0.5, "grounding": 0.3, "verify": 0.5, "max_boxes": 5}}
# (xyxy, grounding score, query): the second is below grounding 0.3, the third passes it but not verify
BOXES = [([5, 5, 30, 30], 0.9, "stop sign"), ([40, 5, 60, 25], 0.2, "stop sign"), ([5, 35, 25, 55], 0.6, "stop sign")]


def vlm_answer(image, question):
    """0.8 for the whole image and the first crop, 0.3 otherwise (crops differ by size)."""
    return 0.8 if image.size in ((64, 64), (33, 33)) else 0.3


def scripted():
    return ScriptedVLM(vlm_answer), ScriptedGrounder(BOXES)


def image(seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def model_calls(vlm, grounder) -> int:
    return len(vlm.calls) + len(grounder.calls)


# -- the pipeline through the cache --------------------------------------------------------------
def test_second_run_asks_no_model_and_gives_the_same_boxes():
    vlm, grounder = scripted()
    cfg = parse_project(PROJECT)
    first = Pipeline(cfg, vlm=vlm, grounder=grounder).run(image())
    asked = model_calls(vlm, grounder)
    assert asked == 1 + 1 + 2  # filter, ground, verify of the two boxes over the grounding threshold
    again = Pipeline(cfg, vlm=vlm, grounder=grounder)
    second = again.run(image())
    assert model_calls(vlm, grounder) == asked
    assert again.cache_counts() == {"hits": 4, "misses": 0}
    assert second.detections.records() == first.detections.records()
    assert second.filter_answer == first.filter_answer


def test_other_thresholds_cost_no_model_call_and_dropped_candidates_keep_their_scores():
    vlm, grounder = scripted()
    Pipeline(parse_project(PROJECT), vlm=vlm, grounder=grounder).run(image())
    asked = model_calls(vlm, grounder)
    stricter = parse_project({**PROJECT, "thresholds": {**PROJECT["thresholds"], "verify": 0.9, "filter": 0.7}})
    res = Pipeline(stricter, vlm=vlm, grounder=grounder).run(image())
    assert model_calls(vlm, grounder) == asked
    assert not res.detections.kept.any()
    # the grounder's raw answer is cached before any threshold: the 0.2 box is in it
    cached = CachedGrounder(grounder).boxes(image(), ["stop sign"])
    assert sorted(cached.scores.tolist()) == pytest.approx([0.2, 0.6, 0.9])
    assert model_calls(vlm, grounder) == asked
    # a lower grounding threshold verifies the 0.2 box: one new crop, the others come from the cache
    looser = parse_project({**PROJECT, "thresholds": {**PROJECT["thresholds"], "grounding": 0.1}})
    res = Pipeline(looser, vlm=vlm, grounder=grounder).run(image())
    assert model_calls(vlm, grounder) == asked + 1
    assert np.isfinite(res.detections.verify_scores).sum() == 3


def test_key_is_pixels_question_model_and_crop():
    vlm, grounder = scripted()
    cfg = parse_project(PROJECT)
    Pipeline(cfg, vlm=vlm, grounder=grounder).run(image(0))
    asked = model_calls(vlm, grounder)
    Pipeline(cfg, vlm=vlm, grounder=grounder).run(image(1))  # other pixels: everything asked again
    assert model_calls(vlm, grounder) == 2 * asked
    padded = parse_project({**PROJECT, "thresholds": {**PROJECT["thresholds"], "crop_padding": 0.3}})
    Pipeline(padded, vlm=vlm, grounder=grounder).run(image(0))  # other crops: only verify asked again
    assert model_calls(vlm, grounder) == 2 * asked + 2
    other_prompt = parse_project({**PROJECT, "prompts": {"verify": "A {target_object}? YES or NO."}})
    Pipeline(other_prompt, vlm=vlm, grounder=grounder).run(image(0))
    assert model_calls(vlm, grounder) == 2 * asked + 4
    other_model = ScriptedVLM(vlm_answer)
    other_model.describe = lambda: {"name": "scripted-vlm", "model": "another"}
    Pipeline(cfg, vlm=other_model, grounder=grounder).run(image(0))
    assert len(other_model.calls) == 3  # filter + two crops: another model's answers are not reused


def test_where_a_model_runs_is_not_its_identity():
    class Served(ScriptedVLM):
        def __init__(self, fn, url):
            super().__init__(fn)
            self.url = url

        def describe(self):
            return {"name": "openai", "model": "qwen", "url": self.url, "top_logprobs": 5}

    a, b = Served(vlm_answer, "http://127.0.0.1:8000/v1"), Served(vlm_answer, "http://127.0.0.1:9000/v1")
    assert CachedVLM(a).yes_probability(image(), "q?").p_yes == 0.8
    assert CachedVLM(b).yes_probability(image(), "q?").p_yes == 0.8
    assert (len(a.calls), len(b.calls)) == (1, 0)


def test_a_provider_already_behind_the_cache_is_not_wrapped_twice():
    vlm, grounder = scripted()
    first = Pipeline(parse_project(PROJECT), vlm=vlm, grounder=grounder)
    again = Pipeline(parse_project(PROJECT), vlm=first.vlm, grounder=first.grounder)
    assert again.vlm is first.vlm and again.grounder is first.grounder and again.vlm.inner is vlm


def test_batch_asks_only_the_missing_crops_in_one_call():
    vlm = ScriptedVLM(lambda im, q: im.size[0] / 100)
    cached = CachedVLM(vlm)
    crops = [Image.new("RGB", (w, 10)) for w in (10, 20, 30)]
    cached.yes_probabilities(crops[:1], "q?")
    out = cached.yes_probabilities(crops, "q?")
    assert [a.p_yes for a in out] == pytest.approx([0.1, 0.2, 0.3])
    assert vlm.batches == [1, 2]


def test_yesno_and_boxes_round_trip_exactly():
    ans = YesNo(0.123456789, "logprobs", "Yes", {"top_logprobs": [["Yes", -0.1]]})
    assert answer_cache.decode_yesno(answer_cache.encode_yesno(ans)) == ans
    dets = ScriptedGrounder([([0.1, 0.2, 10.3, 20.7], float(np.float32(0.3)), "a"),
                             ([1, 2, 3, 4], float("nan"), "b")]).boxes(image(), ["a", "b"])
    back = answer_cache.decode_boxes(answer_cache.encode_boxes(dets))
    assert back.xyxy.tobytes() == dets.xyxy.tobytes() and back.scores.tobytes() == dets.scores.tobytes()
    assert back.labels.tolist() == ["a", "b"] and back.queries.tolist() == ["a", "b"]


def test_switched_off_by_the_environment(monkeypatch):
    vlm, grounder = scripted()
    cfg = parse_project(PROJECT)
    Pipeline(cfg, vlm=vlm, grounder=grounder).run(image())
    asked = model_calls(vlm, grounder)
    monkeypatch.setenv("LF_ANSWER_CACHE", "0")
    off = Pipeline(cfg, vlm=vlm, grounder=grounder)
    off.run(image())
    assert model_calls(vlm, grounder) == 2 * asked
    assert off.cache_counts() == {"hits": 0, "misses": 0}


def test_a_broken_store_never_fails_a_prediction(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where MODEL_DIR should be")
    monkeypatch.setenv("MODEL_DIR", str(blocker))
    vlm, grounder = scripted()
    with caplog.at_level(logging.WARNING, logger="pipeline.answer_cache"):
        res = Pipeline(parse_project(PROJECT), vlm=vlm, grounder=grounder).run(image())
    assert res.detections.kept.sum() == 1
    assert "models are asked instead" in caplog.text


# -- `label-factory run` twice ------------------------------------------------------------------
def test_second_cli_run_on_the_same_images_makes_no_model_call(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LF_ANSWER_CACHE", raising=False)  # --no-cache sets it in this process: unset afterwards
    vlm, grounder = scripted()
    monkeypatch.setattr(registry, "get_vlm", lambda cfg: vlm)
    monkeypatch.setattr(registry, "get_grounder", lambda cfg: grounder)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        image(i).save(images / f"{i}.png")
    project = tmp_path / "p.yaml"
    project.write_text(yaml.safe_dump(PROJECT))

    def run(out, *extra):
        assert cli.main(["run", "--project", str(project), "--images", str(images), "--out", str(tmp_path / out),
                         "--quiet", *extra]) == 0
        return json.loads((tmp_path / out / "tasks.json").read_text()), capsys.readouterr().out

    first, _ = run("a")
    asked = model_calls(vlm, grounder)
    assert asked == 3 * 4
    second, printed = run("b")
    assert model_calls(vlm, grounder) == asked
    assert "answer cache: 12 answer(s) reused, 0 asked of the models" in printed
    assert regions(second) == regions(first)
    _, printed = run("c", "--no-cache")
    assert model_calls(vlm, grounder) == 2 * asked and "(off)" in printed


def regions(tasks: list) -> list:
    """Each task's predicted regions without their random ids."""
    return [[{k: v for k, v in r.items() if k != "id"} for r in t["predictions"][0]["result"]] for t in tasks]


# -- the store -----------------------------------------------------------------------------------
def test_store_is_bounded_and_evicts_the_least_recently_used(tmp_path):
    row = 1000 + answer_cache.ROW_OVERHEAD
    st = AnswerStore(tmp_path / "a.db", max_bytes=20 * row, touch_after=0)
    keys = [bytes([i]) * 32 for i in range(60)]
    for i, k in enumerate(keys):
        st.put_many([(k, "vlm", bytes([i]) * 1000)])
        if i >= 1:
            assert st.get(keys[0]) == bytes([0]) * 1000  # read after every write: always recently used
        assert st.stats()["bytes"] <= 20 * row
    stats = st.stats()
    assert stats["bytes"] == stats["answers"] * row
    assert st.get(keys[0]) is not None and st.get(keys[-1]) is not None
    assert st.get(keys[1]) is None and st.get(keys[30]) is None  # old and never read again: evicted
    size = os.path.getsize(tmp_path / "a.db")
    for i in range(200, 260):  # 3x the bound again: the file reuses the freed pages
        st.put_many([(bytes([i % 256]) * 31 + b"x", "vlm", b"y" * 1000)])
    assert os.path.getsize(tmp_path / "a.db") <= max(size, 60 * row) and st.stats()["bytes"] <= 20 * row


def test_rewriting_an_answer_keeps_the_byte_count(tmp_path):
    st = AnswerStore(tmp_path / "a.db", max_bytes=10**6)
    st.put_many([(b"k" * 32, "vlm", b"1" * 10)])
    st.put_many([(b"k" * 32, "vlm", b"2" * 30)])
    assert st.stats() == {"path": str(tmp_path / "a.db"), "answers": 1, "bytes": 30 + answer_cache.ROW_OVERHEAD,
                          "max_bytes": 10**6}
    assert st.get(b"k" * 32) == b"2" * 30


def _writer(path: str, tag: int, n: int, start) -> None:
    st = AnswerStore(path, max_bytes=10**9)
    start.wait()
    for i in range(n):  # one transaction per answer, as the pipeline writes them
        st.put_many([(f"{tag}-{i}".encode().ljust(32, b"."), "vlm", f"{tag}:{i}".encode() * 10)])
        st.put_many([(f"shared-{i}".encode().ljust(32, b"."), "vlm", b"same" * 10)])  # both write these


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "answers.db")
    AnswerStore(path, max_bytes=10**9)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, tag, 150, start)) for tag in (1, 2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    st = AnswerStore(path, max_bytes=10**9)
    for tag in (1, 2):
        for i in range(150):
            assert st.get(f"{tag}-{i}".encode().ljust(32, b".")) == f"{tag}:{i}".encode() * 10
    stats = st.stats()
    assert stats["answers"] == 3 * 150
    expected = sum(len(f"{t}:{i}".encode() * 10) for t in (1, 2) for i in range(150)) + 150 * 40
    assert stats["bytes"] == expected + 3 * 150 * answer_cache.ROW_OVERHEAD  # the running total stayed exact
