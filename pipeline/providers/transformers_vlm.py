"""A local Hugging Face image-text-to-text model as a YES/NO judge.

P(yes) comes from ONE forward pass (no generation): the next-token logits at the last prompt
position, restricted to the token ids that spell yes / no ("YES", "Yes", "yes", " yes", ...,
only variants the tokenizer encodes as a single token).  The yes-mass and no-mass are each a
logsumexp over their variants, so ``p_yes = softmax([lse(yes), lse(no)])[0]``.

Several crops go through one forward call (up to ``max_batch``), left padded so the last
position is the next token for every row.  Works with any model that has a chat template and
loads with ``AutoProcessor`` + ``AutoModelForImageTextToText`` (Qwen2.5-VL is the reference).
"""
from __future__ import annotations

import inspect
import math
import threading
from typing import Sequence

import torch
from PIL import Image

from pipeline.hardware import choose_dtype, to_model
from pipeline.providers import hub
from pipeline.providers.base import VLM, ProviderError, YesNo, resolve_device

YES_VARIANTS = ("YES", "Yes", "yes", " yes", " Yes", " YES")
NO_VARIANTS = ("NO", "No", "no", " no", " No", " NO")
MIN_SIDE = 28  # Qwen-style processors need each side ≥ one merged patch (28 px); tiny crops are upscaled


def single_token_ids(tokenizer, variants: Sequence[str]) -> dict[int, str]:
    """Token id -> variant text for every variant the tokenizer encodes as exactly one token."""
    out: dict[int, str] = {}
    for v in variants:
        ids = tokenizer.encode(v, add_special_tokens=False)
        if len(ids) == 1 and ids[0] not in out:
            out[ids[0]] = v
    return out


def yes_no_from_logits(logits: torch.Tensor, yes_ids: Sequence[int], no_ids: Sequence[int]) -> tuple[float, int, dict]:
    """P(yes) from one row of next-token logits (vocab,).

    Returns ``(p_yes, top_id, raw)``: ``top_id`` is the most likely variant on the winning side (so the
    answer always agrees with ``p_yes >= 0.5``), and
    ``raw`` holds ``p_yes_token`` / ``p_no_token``, the mass of the yes / no variants under the
    full-vocabulary softmax (how much the model wanted to answer yes/no at all)."""
    logits = logits.detach().float().cpu()
    yes_ids, no_ids = list(yes_ids), list(no_ids)
    lse_yes = torch.logsumexp(logits[yes_ids], 0)
    lse_no = torch.logsumexp(logits[no_ids], 0)
    p_yes = torch.sigmoid(lse_yes - lse_no).item()  # == exp(lse_yes) / (exp(lse_yes) + exp(lse_no))
    log_z = torch.logsumexp(logits, 0)
    side = yes_ids if p_yes >= 0.5 else no_ids
    top_id = side[int(torch.argmax(logits[side]))]
    raw = {"p_yes_token": math.exp((lse_yes - log_z).item()), "p_no_token": math.exp((lse_no - log_z).item())}
    return p_yes, top_id, raw


def _prepare(image: Image.Image) -> Image.Image:
    image = image.convert("RGB") if image.mode != "RGB" else image
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        s = MIN_SIDE / max(1, min(w, h))
        image = image.resize((max(MIN_SIDE, round(w * s)), max(MIN_SIDE, round(h * s))), Image.BICUBIC)
    return image


class TransformersVLM(VLM):
    name = "transformers"

    def __init__(self, model: str, device: str = "auto", max_batch: int = 8, dtype: str = "auto"):
        from transformers import AutoModelForImageTextToText, AutoProcessor
        self.model_id = str(model)
        self.device = resolve_device(device)
        self.max_batch = max(1, int(max_batch))
        self.dtype = choose_dtype(self.device, dtype)
        source = hub.locate(self.model_id, "transformers VLM")
        try:
            self.processor = AutoProcessor.from_pretrained(source)
            self.model = AutoModelForImageTextToText.from_pretrained(
                source, dtype=self.dtype.torch_dtype).to(self.device).eval()
        except Exception as e:  # noqa: BLE001 - report which model failed and why
            raise ProviderError(f"transformers VLM {self.model_id!r}: cannot load on {self.device}: {e}") from e
        self.tokenizer = getattr(self.processor, "tokenizer", None) or self.processor
        self.tokenizer.padding_side = "left"  # last position = next token for every row of a batch
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.yes_tokens = single_token_ids(self.tokenizer, YES_VARIANTS)
        self.no_tokens = single_token_ids(self.tokenizer, NO_VARIANTS)
        if not self.yes_tokens or not self.no_tokens:
            raise ProviderError(f"transformers VLM {self.model_id!r}: tokenizer has no single-token yes/no "
                                f"(yes: {sorted(self.yes_tokens.values())}, no: {sorted(self.no_tokens.values())})")
        self._keep_last = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self._lock = threading.Lock()  # one call at a time: concurrent passes only fight over cores / memory

    @classmethod
    def from_config(cls, cfg) -> "TransformersVLM":
        return cls(cfg.model, device=cfg.device, max_batch=cfg.max_batch, dtype=cfg.dtype)

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model_id, "device": self.device, "dtype": self.dtype.dtype,
                "max_batch": self.max_batch, "yes_tokens": sorted(self.yes_tokens.values()),
                "no_tokens": sorted(self.no_tokens.values())}

    # -- inputs -------------------------------------------------------------------------
    def _prompt(self, question: str) -> str:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def _inputs(self, images: Sequence[Image.Image], question: str):
        text = self._prompt(question)
        imgs = [_prepare(im) for im in images]
        inputs = self.processor(text=[text] * len(imgs), images=imgs, return_tensors="pt", padding=True)
        return to_model(inputs, self.device, self.dtype.torch_dtype)

    # -- answers ------------------------------------------------------------------------
    def next_token_logits(self, images: Sequence[Image.Image], question: str) -> torch.Tensor:
        """(len(images), vocab) next-token logits after the prompt, one forward pass."""
        kwargs = {"logits_to_keep": 1} if self._keep_last else {}
        with self._lock:  # the fast tokenizer's padding state is not thread-safe either
            inputs = self._inputs(images, question)
            try:
                with torch.inference_mode():
                    out = self.model(**inputs, **kwargs)
            except Exception as e:  # noqa: BLE001
                raise ProviderError(f"transformers VLM {self.model_id!r}: forward pass failed: {e}") from e
        return out.logits[:, -1, :].float()

    def yes_probabilities(self, images: Sequence[Image.Image], question: str) -> list[YesNo]:
        images = list(images)
        out: list[YesNo] = []
        yes_ids, no_ids = list(self.yes_tokens), list(self.no_tokens)
        names = {**self.yes_tokens, **self.no_tokens}
        for start in range(0, len(images), self.max_batch):
            logits = self.next_token_logits(images[start:start + self.max_batch], question)
            for row in logits:
                p_yes, top_id, raw = yes_no_from_logits(row, yes_ids, no_ids)
                out.append(YesNo(p_yes=p_yes, method="logits", answer=names[top_id], raw=raw))
        return out

    def yes_probability(self, image: Image.Image, question: str) -> YesNo:
        return self.yes_probabilities([image], question)[0]

    def generate_answer(self, image: Image.Image, question: str, max_new_tokens: int = 16) -> str:
        """Greedy text answer (for benchmarks comparing text answers with the logits path)."""
        with self._lock:
            inputs = self._inputs([image], question)
            try:
                with torch.inference_mode():
                    seq = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            except Exception as e:  # noqa: BLE001
                raise ProviderError(f"transformers VLM {self.model_id!r}: generate failed: {e}") from e
        new = seq[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()
