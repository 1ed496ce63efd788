"""A VLM behind any OpenAI-compatible chat-completions server (mlx_vlm.server, vLLM, Ollama, llama.cpp).

P(yes) comes from the first generated token's ``top_logprobs`` (method ``"logprobs"``).  Servers that give
no logprobs (mlx_vlm.server started without ``--top-logprobs-k``, llama.cpp builds without them, ...) fall
back to parsing the text answer (method ``"text"``, with ``raw["fallback"]`` saying why).  An answer that
is neither yes nor no scores 0.0 with the reason in ``raw["unparseable"]``; it is not an error.

Transport: one ``requests.Session`` per provider object, ``timeout`` seconds per request, and at most
``concurrency`` requests in flight per provider object.  Connection errors, timeouts, HTTP 5xx and 429
are retried by the one retry policy (``pipeline.retry``: ``retries`` more tries, exponential backoff
from ``backoff`` up to ``backoff_max`` seconds, a server's ``Retry-After`` honoured) within the
request's deadline (``pipeline.deadline``): no try and no wait runs past it.  A server that stays down
raises ``ProviderError`` naming the URL; one whose retries the deadline cut short raises
``DeadlineExceeded`` naming the deadline and the server's last failure.  The API key (from the env var
``api_key_env``) is never logged.
"""
from __future__ import annotations

import base64
import io
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

import requests
from PIL import Image

from pipeline import deadline, settings
from pipeline.providers.answers import p_yes_from_text, p_yes_from_top_logprobs
from pipeline.providers.base import VLM, ProviderError, YesNo
from pipeline.retry import RETRY_STATUS, RetryPolicy, Transient, retry_after_seconds

log = logging.getLogger(__name__)


def encode_image(image: Image.Image) -> str:
    """``image`` as a data URI: JPEG (quality 95) for RGB/greyscale, PNG when there is transparency."""
    buf = io.BytesIO()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image.save(buf, format="PNG")
        mime = "image/png"
    else:
        im = image if image.mode in ("RGB", "L") else image.convert("RGB")
        im.save(buf, format="JPEG", quality=95)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def first_token_top_logprobs(choice: dict) -> Optional[list[tuple[str, float]]]:
    """The first generated token's alternatives as ``[(token, logprob), ...]``, or None when absent.

    Understands the chat-completions shape (``logprobs.content[0].top_logprobs``) and the legacy
    completions shape (``logprobs.top_logprobs[0]`` as a token -> logprob mapping)."""
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return None
    content = lp.get("content")
    if isinstance(content, list) and content:
        first = content[0] or {}
        top = first.get("top_logprobs") or []
        # only the chosen token's logprob (empty top_logprobs) says nothing about the alternatives
        out = [(str(t.get("token", "")), float(t["logprob"])) for t in top
               if isinstance(t, dict) and t.get("logprob") is not None]
        return out or None
    legacy = lp.get("top_logprobs")
    if isinstance(legacy, list) and legacy and isinstance(legacy[0], dict):
        return [(str(t), float(v)) for t, v in legacy[0].items() if v is not None] or None
    return None


class OpenAIVLM(VLM):
    name = "openai"

    def __init__(self, url: str, model: str, api_key_env: Optional[str] = None, timeout: float = 60.0,
                 retries: int = 3, concurrency: int = 2, top_logprobs: int = 5,
                 backoff: float = 0.5, backoff_max: float = 8.0):
        if not url:
            raise ProviderError("openai VLM provider needs a url (e.g. http://127.0.0.1:8080/v1)")
        self.url = url.rstrip("/")
        self.endpoint = self.url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.concurrency = int(concurrency)
        self.top_logprobs = int(top_logprobs)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self._sem = threading.BoundedSemaphore(self.concurrency)
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(self.concurrency, 10))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @classmethod
    def from_config(cls, cfg) -> "OpenAIVLM":
        return cls(url=cfg.url, model=cfg.model, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
                   retries=cfg.retries, concurrency=cfg.concurrency)

    def describe(self) -> dict:
        return {"name": self.name, "url": self.url, "model": self.model, "top_logprobs": self.top_logprobs}

    def close(self) -> None:
        self._session.close()

    # -- transport ------------------------------------------------------------------------
    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = settings.named(self.api_key_env)
            if not key:
                raise ProviderError(f"VLM server {self.url}: the API key env var {self.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post_once(self, body: dict, headers: dict) -> dict:
        timeout = deadline.clamp(self.timeout, f"asking the VLM server at {self.url}")  # the request's budget
        try:
            with self._sem:
                resp = self._session.post(self.endpoint, json=body, headers=headers, timeout=timeout)
        except requests.Timeout:
            if deadline.expired():
                raise deadline.DeadlineExceeded(f"{deadline.current().describe()} ran out: the VLM server at "
                                                f"{self.url} gave no answer") from None
            raise Transient(f"no answer within {self.timeout:g} s") from None
        except requests.ConnectionError as e:
            raise Transient(f"cannot connect ({_short_reason(e)})") from None
        if resp.status_code in RETRY_STATUS:
            raise Transient(f"HTTP {resp.status_code}: {_body_excerpt(resp)}", status=resp.status_code,
                            retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
        if resp.status_code >= 400:
            hint = " (check the api_key_env / server --api-key)" if resp.status_code in (401, 403) else ""
            raise ProviderError(f"VLM server {self.endpoint} refused the request: HTTP {resp.status_code}"
                                f"{hint}: {_body_excerpt(resp)}")
        try:
            data = resp.json()
            data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderError(f"VLM server {self.endpoint} gave a response that is not an OpenAI chat "
                                f"completion: {_body_excerpt(resp)}") from None
        return data

    def _post(self, body: dict) -> dict:
        headers = self._headers()
        left = deadline.remaining()
        policy = RetryPolicy(attempts=self.retries + 1, backoff=self.backoff, max_wait=self.backoff_max, jitter=0,
                             deadline=None if left is None else max(left, 0.0))
        tries = []

        def once() -> dict:
            tries.append(1)
            return self._post_once(body, headers)

        def on_retry(n: int, exc: BaseException, wait: float) -> None:
            log.warning("VLM server %s: %s; retry %d/%d in %.1f s", self.url, exc, n, self.retries, wait)
        t0 = time.monotonic()
        try:
            return policy.call(once, on_retry=on_retry)
        except Transient as e:
            if e.message.startswith("cannot connect"):
                what = "is down or unreachable"
            elif e.message.startswith("no answer"):
                what = "timed out"
            else:
                what = "kept failing"
            failed = (f"VLM server at {self.url} {what}: {e.message} ({len(tries)} attempt"
                      f"{'s' if len(tries) > 1 else ''} over {time.monotonic() - t0:.1f} s)")
            if len(tries) < policy.attempts:  # the retries stopped short of the request's deadline
                raise deadline.DeadlineExceeded(f"{deadline.current().describe()} left no time to retry: "
                                                f"{failed}") from None
            raise ProviderError(f"{failed}. Is the server running at that address?") from None

    # -- requests -------------------------------------------------------------------------
    def _body(self, image: Image.Image, question: str, max_tokens: int, logprobs: bool) -> dict:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": encode_image(image)}},
                {"type": "text", "text": question},
            ]}],
            "max_tokens": int(max_tokens),
            "temperature": 0,
        }
        if logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        return body

    @staticmethod
    def _text(data: dict) -> str:
        msg = data["choices"][0].get("message") or {}
        return str(msg.get("content") or "")

    def generate_answer(self, image: Image.Image, question: str, max_new_tokens: int = 32) -> str:
        """The server's greedy text answer (for benchmarks)."""
        return self._text(self._post(self._body(image, question, max_new_tokens, logprobs=False)))

    def yes_probability(self, image: Image.Image, question: str) -> YesNo:
        data = self._post(self._body(image, question, 1, logprobs=True))
        choice = data["choices"][0]
        text = self._text(data)
        top = first_token_top_logprobs(choice)
        raw: dict = {}
        if top:
            raw["top_logprobs"] = [[tok, round(lp, 4)] for tok, lp in top]
            p = p_yes_from_top_logprobs(top)
            if p is not None:
                return YesNo(p_yes=float(p), method="logprobs", answer=text or top[0][0], raw=raw)
            raw["fallback"] = "no yes/no token among the top logprobs"
        else:
            raw["fallback"] = "server returned no logprobs"
        p = p_yes_from_text(text)
        if p is None:  # one token may be a fragment ("Y", a space): ask once more for a few tokens
            text = self._text(self._post(self._body(image, question, 5, logprobs=False)))
            raw["retry_max_tokens"] = 5
            p = p_yes_from_text(text)
        if p is None:
            raw["unparseable"] = f"answer {text[:80]!r} is neither yes nor no"
            return YesNo(p_yes=0.0, method="text", answer=text, raw=raw)
        return YesNo(p_yes=float(p), method="text", answer=text, raw=raw)

    def yes_probabilities(self, images: Sequence[Image.Image], question: str) -> list[YesNo]:
        images = list(images)
        if len(images) <= 1 or self.concurrency == 1:
            return [self.yes_probability(im, question) for im in images]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(images)),
                                thread_name_prefix="openai-vlm") as pool:
            return list(pool.map(deadline.propagate(lambda im: self.yes_probability(im, question)), images))


def _short_reason(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "Connection reset", "Temporary failure in name resolution", "Remote end closed"):
        if marker in text:
            return marker.lower()
    return type(e).__name__


def _body_excerpt(resp: requests.Response, n: int = 300) -> str:
    text = (resp.text or "").strip().replace("\n", " ")
    return text[:n] + ("..." if len(text) > n else "") or "(empty body)"
