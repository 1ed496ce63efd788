"""OpenAIVLM: protocol against a real mlx_vlm.server (slow) and client logic against a local stand-in."""
from __future__ import annotations

import json
import logging
import math
import time

import pytest
from PIL import Image

from pipeline.config import VLMProvider
from pipeline.providers.base import ProviderError
from pipeline.providers.openai_vlm import OpenAIVLM, encode_image, first_token_top_logprobs
from pipeline.stack.processes import free_port
from pipeline.tiny.qwen import KNOWN_P_YES
from tests.doubles.openai_server import FakeServer, completion, image_of

QUESTION = "Is this a stop sign? Answer YES or NO."


def crop(i: int = 0) -> Image.Image:
    return Image.new("RGB", (48, 40), (10 * i, 100, 50))


def vlm_for(url, model="tiny", **kw) -> OpenAIVLM:
    return OpenAIVLM.from_config(VLMProvider(kind="openai", url=url, model=model, **kw))


# -- real server ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_p_yes_from_logprobs_real_server(mlx_vlm_server):
    vlm = vlm_for(mlx_vlm_server, model=mlx_vlm_server.model, retries=0)
    t0 = time.perf_counter()
    r = vlm.yes_probability(crop(), QUESTION)
    elapsed = time.perf_counter() - t0
    assert r.method == "logprobs"
    assert 0.0 <= r.p_yes <= 1.0
    # the tiny served model has planted first-token logits yes=2, no=1 (see fixtures_servers)
    assert r.p_yes == pytest.approx(KNOWN_P_YES, abs=1e-3)
    assert r.answer.strip().lower() == "yes"
    assert "fallback" not in r.raw and len(r.raw["top_logprobs"]) == 5
    print(f"\nOpenAIVLM.yes_probability against mlx_vlm.server: {elapsed:.3f} s/call")


@pytest.mark.slow
def test_text_fallback_real_server(mlx_vlm_server_no_logprobs):
    """Server started without --top-logprobs-k gives no top logprobs: P(yes) from the text answer."""
    vlm = vlm_for(mlx_vlm_server_no_logprobs, model=mlx_vlm_server_no_logprobs.model, retries=0)
    r = vlm.yes_probability(crop(), QUESTION)
    assert r.method == "text"
    assert r.p_yes == 1.0 and r.answer.strip().lower() == "yes"
    assert r.raw["fallback"] == "server returned no logprobs"
    assert vlm.generate_answer(crop(), QUESTION, max_new_tokens=3).lower().startswith("yes")


@pytest.mark.slow
def test_batched_real_server_keeps_count(mlx_vlm_server):
    vlm = vlm_for(mlx_vlm_server, model=mlx_vlm_server.model, retries=0, concurrency=3)
    out = vlm.yes_probabilities([crop(i) for i in range(6)], QUESTION)
    assert len(out) == 6
    assert all(r.method == "logprobs" and r.p_yes == pytest.approx(KNOWN_P_YES, abs=1e-3) for r in out)


# -- server down ----------------------------------------------------------------------------------
def test_server_down_raises_provider_error_quickly(caplog):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    vlm = vlm_for(url, retries=1, timeout=2)
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as ei:
        vlm.yes_probability(crop(), QUESTION)
    assert time.monotonic() - t0 < 5
    msg = str(ei.value)
    assert url in msg and "down" in msg and "2 attempts" in msg
    assert ei.value.__cause__ is None and ei.value.__suppress_context__  # no chained traceback
    assert "retry 1/1" in caplog.text


@pytest.fixture
def fake():
    srv = FakeServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_request_shape_and_exact_p_yes(fake):
    r = vlm_for(fake.url, model="qwen").yes_probability(crop(), QUESTION)
    assert r.method == "logprobs"
    assert r.p_yes == pytest.approx(math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.5)), abs=1e-12)
    body = fake.requests[0]
    assert body["model"] == "qwen" and body["max_tokens"] == 1 and body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    parts = body["messages"][0]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert parts[1] == {"type": "text", "text": QUESTION}
    assert image_of(body).size == (48, 40)


def test_concurrency_limit_and_order(fake):
    """Answers depend on the crop's colour, so the output order is checkable; never more than 3 in flight."""
    fake.delay = 0.15

    def respond(body, n):
        i = round(image_of(body).convert("RGB").getpixel((5, 5))[0] / 10)
        lp_yes = math.log(0.05 + 0.1 * i)
        return 200, completion("yes", [("Yes", lp_yes), (" no", math.log(1 - (0.05 + 0.1 * i)))])

    fake.respond = respond
    vlm = vlm_for(fake.url, concurrency=3)
    out = vlm.yes_probabilities([crop(i) for i in range(9)], QUESTION)
    assert [round(r.p_yes, 6) for r in out] == [round(0.05 + 0.1 * i, 6) for i in range(9)]
    assert len(fake.requests) == 9
    assert 2 <= fake.max_in_flight <= 3


def test_retries_on_503_then_succeeds(fake, caplog):
    fake.respond = lambda body, n: (503, {"error": "busy"}) if n == 1 else (
        200, completion("no", [("no", -0.01), ("yes", -4.6)]))
    r = vlm_for(fake.url, retries=2).yes_probability(crop(), QUESTION)
    assert r.method == "logprobs" and r.p_yes < 0.05
    assert len(fake.requests) == 2 and "HTTP 503" in caplog.text


def test_client_error_is_not_retried(fake):
    fake.respond = lambda body, n: (400, {"detail": "bad model"})
    with pytest.raises(ProviderError, match="HTTP 400.*bad model"):
        vlm_for(fake.url, retries=3).yes_probability(crop(), QUESTION)
    assert len(fake.requests) == 1


def test_api_key_sent_never_logged(fake, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LF_TEST_VLM_KEY", "s3cret-token")
    fake.respond = lambda body, n: (503, {}) if n == 1 else (200, completion("yes", [("yes", -0.2)]))
    vlm = vlm_for(fake.url, api_key_env="LF_TEST_VLM_KEY", retries=1)
    vlm.yes_probability(crop(), QUESTION)
    assert fake.headers[-1]["Authorization"] == "Bearer s3cret-token"
    assert "s3cret" not in caplog.text and "s3cret" not in json.dumps(vlm.describe())
    monkeypatch.delenv("LF_TEST_VLM_KEY")
    with pytest.raises(ProviderError, match="LF_TEST_VLM_KEY"):
        vlm.yes_probability(crop(), QUESTION)


def test_fallback_when_no_yes_no_in_top_logprobs(fake):
    fake.respond = lambda body, n: (200, completion("Yes", [("The", -0.5), ("A", -1.0)]))
    r = vlm_for(fake.url).yes_probability(crop(), QUESTION)
    assert r.method == "text" and r.p_yes == 1.0
    assert r.raw["fallback"] == "no yes/no token among the top logprobs"


def test_unparseable_answer_scores_zero_after_one_retry(fake):
    fake.respond = lambda body, n: (200, completion("Maybe" if n == 1 else "Maybe it is", None))
    r = vlm_for(fake.url).yes_probability(crop(), QUESTION)
    assert r.p_yes == 0.0 and r.method == "text"
    assert r.raw["fallback"] == "server returned no logprobs" and "neither yes nor no" in r.raw["unparseable"]
    assert [b["max_tokens"] for b in fake.requests] == [1, 5]


def test_legacy_logprobs_shape_and_png_for_alpha():
    choice = {"logprobs": {"top_logprobs": [{" Yes": -0.3, " No": -1.5}]}}
    assert first_token_top_logprobs(choice) == [(" Yes", -0.3), (" No", -1.5)]
    only_chosen = {"logprobs": {"content": [{"token": "yes", "logprob": -0.1, "top_logprobs": []}]}}
    assert first_token_top_logprobs(only_chosen) is None
    assert encode_image(Image.new("RGBA", (4, 4))).startswith("data:image/png;base64,")


def test_retries_stop_at_the_request_deadline_and_say_what_failed(fake):
    """Waits of 1, 2, 4 s under a 1.5 s deadline: after the wait that fits, the next one would end past the
    deadline, so the provider stops at once with the deadline and the server's own failure in the error."""
    from pipeline import deadline
    fake.respond = lambda body, n: (503, {"error": "overloaded"})
    vlm = OpenAIVLM(fake.url, "m", retries=3, backoff=1.0, backoff_max=8.0)
    t0 = time.monotonic()
    with deadline.within(1.5, "PREDICT_DEADLINE"), pytest.raises(deadline.DeadlineExceeded) as ei:
        vlm.yes_probability(crop(), QUESTION)
    msg = str(ei.value)
    assert "1.5 s deadline (PREDICT_DEADLINE)" in msg and "HTTP 503" in msg and "overloaded" in msg
    assert fake.url in msg and "2 attempts" in msg and len(fake.requests) == 2
    assert time.monotonic() - t0 < 1.45  # not slept out to the deadline
