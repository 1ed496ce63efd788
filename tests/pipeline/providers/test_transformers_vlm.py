"""TransformersVLM on a tiny random-weight Qwen2.5-VL loaded through from_pretrained."""
import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from pipeline.config import VLMProvider
from pipeline.providers.base import ProviderError, YesNo
from pipeline.providers.transformers_vlm import (
    NO_VARIANTS,
    YES_VARIANTS,
    TransformersVLM,
    resolve_device,
    yes_no_from_logits,
)

Q = "Is this a stop sign? Answer YES or NO."


@pytest.fixture(scope="module")
def vlm(tiny_qwen_dir):
    return TransformersVLM(str(tiny_qwen_dir), device="cpu", max_batch=3)


def crops():
    """Different sizes and modes: the batch needs padding (different numbers of image tokens)."""
    return [Image.new("RGB", (50, 80), (200, 30, 30)), Image.new("RGB", (120, 60), (20, 200, 30)),
            Image.new("L", (10, 300), 128), Image.new("RGBA", (200, 200), (0, 0, 255, 255)),
            Image.new("RGB", (33, 33), (250, 250, 250))]


def test_single_answer_protocol(vlm):
    r = vlm.yes_probability(crops()[0], Q)
    assert isinstance(r, YesNo) and r.method == "logits"
    assert 0.0 <= r.p_yes <= 1.0
    assert r.answer in YES_VARIANTS + NO_VARIANTS
    assert (r.p_yes >= 0.5) == (r.answer.strip().lower() == "yes")
    assert set(r.raw) == {"p_yes_token", "p_no_token"} and all(0 <= v <= 1 for v in r.raw.values())
    assert r.to_json()["method"] == "logits"


def test_tokenizer_setup(vlm):
    assert vlm.tokenizer.padding_side == "left"
    assert vlm.yes_tokens and vlm.no_tokens
    for tid, text in {**vlm.yes_tokens, **vlm.no_tokens}.items():
        assert vlm.tokenizer.encode(text, add_special_tokens=False) == [tid]
    assert vlm.describe()["device"] == "cpu"


def test_batch_equals_single_calls(vlm, monkeypatch):
    images = crops()
    inputs = vlm._inputs(images[:3], Q)
    assert (inputs["attention_mask"] == 0).any(), "crops of different sizes must need padding"
    assert (inputs["attention_mask"][:, -1] == 1).all(), "left padding: last position is real for every row"

    calls = []
    real = vlm.next_token_logits
    monkeypatch.setattr(vlm, "next_token_logits", lambda ims, q: calls.append(len(ims)) or real(ims, q))
    batched = vlm.yes_probabilities(images, Q)
    assert calls == [3, 2]  # max_batch=3 crops per forward pass
    singles = [vlm.yes_probability(im, Q) for im in images]
    assert len(batched) == len(images)
    for b, s in zip(batched, singles):
        assert b.p_yes == pytest.approx(s.p_yes, abs=1e-4)
        assert b.method == s.method == "logits"


def test_empty_batch(vlm):
    assert vlm.yes_probabilities([], Q) == []


def _fake_forward(vlm, rows):
    """Replace the model forward: the next-token logits of row i are ``rows[i]``."""
    vocab = vlm.model.config.get_text_config().vocab_size

    def forward(*args, input_ids=None, **kwargs):
        b, n = input_ids.shape
        logits = torch.full((b, n, vocab), -30.0)
        for i in range(b):
            for tid, value in rows[i].items():
                logits[i, -1, tid] = value
        return SimpleNamespace(logits=logits)
    return forward


def test_injected_logits_give_exact_p_yes(vlm, monkeypatch):
    yes = list(vlm.yes_tokens)
    no = list(vlm.no_tokens)
    rows = [
        {yes[0]: math.log(0.3), yes[1]: math.log(0.1), no[0]: math.log(0.2)},  # p_yes = 0.4 / 0.6
        {no[1]: 2.0, yes[0]: 0.0},  # p_yes = sigmoid(-2)
    ]
    monkeypatch.setattr(vlm.model, "forward", _fake_forward(vlm, rows))
    a, b = vlm.yes_probabilities(crops()[:2], Q)
    assert a.p_yes == pytest.approx(0.4 / 0.6, abs=1e-5)
    assert a.answer == vlm.yes_tokens[yes[0]]  # the top yes-variant
    z = 0.6 + (vlm.model.config.get_text_config().vocab_size - 3) * math.exp(-30.0)  # full-vocab softmax
    assert a.raw["p_yes_token"] == pytest.approx(0.4 / z, rel=1e-4)
    assert a.raw["p_no_token"] == pytest.approx(0.2 / z, rel=1e-4)
    assert b.p_yes == pytest.approx(1 / (1 + math.e ** 2), abs=1e-5)
    assert b.answer == vlm.no_tokens[no[1]]


def test_yes_no_from_logits_logsumexp():
    logits = torch.tensor([0.0, math.log(2.0), math.log(1.0), math.log(3.0), 5.0])
    p, top, raw = yes_no_from_logits(logits, yes_ids=[1, 2], no_ids=[3])
    assert p == pytest.approx(3 / 6)  # yes mass 2+1 vs no mass 3: a tie goes to yes
    assert top == 1
    p, top, raw = yes_no_from_logits(logits, yes_ids=[2], no_ids=[1, 3])
    assert p == pytest.approx(1 / 6) and top == 3
    z = 1 + 2 + 1 + 3 + math.exp(5)
    assert raw["p_yes_token"] == pytest.approx(1 / z) and raw["p_no_token"] == pytest.approx(5 / z)


def test_generate_answer_is_text(vlm):
    out = vlm.generate_answer(crops()[1], Q, max_new_tokens=4)
    assert isinstance(out, str)


def test_from_config_auto_device(tiny_qwen_dir):
    v = TransformersVLM.from_config(VLMProvider(kind="transformers", model=str(tiny_qwen_dir), max_batch=2))
    assert v.device == resolve_device("auto") and v.max_batch == 2
    assert 0 <= v.yes_probability(crops()[0], Q).p_yes <= 1


def test_missing_model_is_provider_error(tmp_path):
    with pytest.raises(ProviderError, match="transformers VLM model .*nope.*: no such directory"):
        TransformersVLM(str(tmp_path / "nope"), device="cpu")


def test_concurrent_callers_get_the_same_answers(vlm):
    import threading
    images = crops()[:3]
    expect = [r.p_yes for r in vlm.yes_probabilities(images, Q)]
    got, errors = [], []

    def worker():
        try:
            got.append([r.p_yes for r in vlm.yes_probabilities(images, Q)])
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(got) == 4
    for g in got:
        assert g == pytest.approx(expect, abs=1e-6)
