"""Open-vocabulary grounders from transformers: OWLv2 and Grounding DINO.

Both load with ``AutoProcessor`` + ``AutoModelForZeroShotObjectDetection`` and return every box
scoring ≥ ``min_score`` (default 0: the ground stage applies the YAML threshold and NMS), in pixel
xyxy of the image they were given, clamped to it, with ``labels`` = ``queries`` = the query string
(exactly as passed in) each box belongs to.

Grounding DINO reads one prompt "a. b. c."; each box is assigned to the query whose tokens it
scores highest (max sigmoid over that query's token span), which is also its score.  When the
token spans cannot be located, the phrases the processor decodes are mapped back to the queries
(normalized exact match, else best word overlap, else the box is dropped).  Query lists longer than
the model's text window (256 tokens for the real checkpoints) run in several prompts.
"""
from __future__ import annotations

import re
import threading
from typing import Sequence

import numpy as np
import supervision as sv
import torch
from PIL import Image
from torchvision.ops import box_convert

from pipeline.detections import Detections
from pipeline.hardware import choose_dtype, to_model
from pipeline.providers import hub
from pipeline.providers.base import Grounder, ProviderError, resolve_device


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", str(text).lower())


def normalize_query(text: str) -> str:
    """Lowercase words joined by single spaces (what Grounding DINO's prompt and decoded phrases look like)."""
    return " ".join(_words(text))


def match_query(phrase: str, queries: Sequence[str]) -> int | None:
    """Index of the query a decoded phrase belongs to: normalized exact match, else the query with the
    best word overlap (Jaccard; ties -> earlier query), else None."""
    norm = normalize_query(phrase)
    normed = [normalize_query(q) for q in queries]
    if norm in normed:
        return normed.index(norm)
    words = set(norm.split())
    best, best_i = 0.0, None
    for i, q in enumerate(normed):
        qw = set(q.split())
        if not qw or not words:
            continue
        j = len(words & qw) / len(words | qw)
        if j > best:
            best, best_i = j, i
    return best_i


def _unique(queries: Sequence[str]) -> list[str]:
    out: list[str] = []
    for q in queries:
        if isinstance(q, str) and q.strip() and q not in out:
            out.append(q)
    return out


class _HFZeroShotGrounder(Grounder):
    name = "hf-zero-shot"

    def __init__(self, model: str, device: str = "auto", min_score: float = 0.0, dtype: str = "auto"):
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor
        self.model_id = str(model)
        self.device = resolve_device(device)
        self.min_score = float(min_score)
        self.dtype = choose_dtype(self.device, dtype)
        source = hub.locate(self.model_id, f"{self.name} grounder")
        try:
            self.processor = AutoProcessor.from_pretrained(source)
            self.model = AutoModelForZeroShotObjectDetection.from_pretrained(
                source, dtype=self.dtype.torch_dtype).to(self.device).eval()
        except Exception as e:  # noqa: BLE001 - report which model failed and why
            raise ProviderError(f"{self.name} grounder {self.model_id!r}: cannot load on {self.device}: {e}") from e
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg, min_score: float = 0.0):
        return cls(cfg.model, device=cfg.device, min_score=min_score, dtype=cfg.dtype)

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model_id, "device": self.device, "dtype": self.dtype.dtype,
                "min_score": self.min_score}

    def _forward(self, inputs):
        try:
            with torch.inference_mode():
                return self.model(**to_model(inputs, self.device, self.dtype.torch_dtype))
        except Exception as e:  # noqa: BLE001
            raise ProviderError(f"{self.name} grounder {self.model_id!r}: forward pass failed: {e}") from e

    def _detect(self, image: Image.Image, queries: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xyxy (N,4) pixels, scores (N,), query index (N,)) for every box the model proposes."""
        raise NotImplementedError

    def boxes(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        queries = _unique(queries)
        if not queries:
            return Detections.empty()
        image = image.convert("RGB") if image.mode != "RGB" else image
        with self._lock:  # one call at a time (the fast tokenizer's padding state is not thread-safe)
            xyxy, scores, qidx = self._detect(image, queries)
        keep = scores >= self.min_score
        xyxy, scores, qidx = xyxy[keep], scores[keep], qidx[keep]
        w, h = image.size
        xyxy = np.column_stack([np.clip(xyxy[:, 0], 0, w), np.clip(xyxy[:, 1], 0, h),
                                np.clip(xyxy[:, 2], 0, w), np.clip(xyxy[:, 3], 0, h)]) if len(xyxy) else xyxy
        labels = np.array([queries[i] for i in qidx], dtype=object)
        return Detections(xyxy=xyxy.reshape(-1, 4), scores=scores, labels=labels, queries=labels.copy())


class OWLv2Grounder(_HFZeroShotGrounder):
    """OWLv2 (or OWL-ViT): one logit per (box, query); each box gets its best query.

    ``similar(image, example_xyxy)`` is OWLv2's image-conditioned detection inside one image, in one
    vision pass: the proposal that overlaps the example most gives its class embedding as the query
    (as ``image_guided_detection`` picks one from a query image) and every proposal is scored against
    it with the model's own class head."""
    name = "owlv2"
    finds_similar = True
    square_input = True  # pads to max(w, h) square at the image's own resolution, then resizes to 960

    def similar(self, image: Image.Image, example_xyxy) -> Detections:
        image = image.convert("RGB") if image.mode != "RGB" else image
        w, h = image.size
        side = float(max(w, h))  # OWLv2 pads to a square (bottom / right) before resizing
        example = np.asarray(example_xyxy, np.float32).reshape(1, 4) / side
        with self._lock:
            try:
                pixel_values = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
                with torch.inference_mode():
                    feature_map = self.model.image_embedder(
                        pixel_values=to_model(pixel_values, self.device, self.dtype.torch_dtype))[0]
                    b, ph, pw, d = feature_map.shape
                    feats = feature_map.reshape(b, ph * pw, d)
                    _, class_embeds = self.model.class_predictor(feats)
                    boxes = box_convert(self.model.box_predictor(feats, feature_map)[0].float().cpu(),
                                        "cxcywh", "xyxy").numpy()
                    best = int(sv.box_iou_batch(boxes, example)[:, 0].argmax())
                    logits, _ = self.model.class_predictor(feats, class_embeds[:, best:best + 1])
            except Exception as e:  # noqa: BLE001
                raise ProviderError(f"{self.name} {self.model_id!r}: image-guided detection failed: {e}") from e
        scores = torch.sigmoid(logits[0, :, 0].float()).cpu().numpy()
        xyxy = (boxes * side).clip(0, [w, h, w, h]).astype(np.float32)
        n = len(xyxy)
        return Detections(xyxy=xyxy, scores=scores, labels=["example"] * n, queries=["example"] * n)

    def _detect(self, image, queries):
        w, h = image.size
        max_len = getattr(getattr(self.model.config, "text_config", None), "max_position_embeddings", 16)
        inputs = self.processor(text=[queries], images=image, return_tensors="pt", padding="max_length",
                                max_length=max_len, truncation=True)
        out = self._forward(inputs)
        # threshold -1: keep every box (scores are sigmoids); min_score is applied by the caller.
        # OWLv2's post-processing scales by max(H, W) itself (the image is padded to a square).
        res = self.processor.post_process_grounded_object_detection(out, threshold=-1.0, target_sizes=[(h, w)])[0]
        return (res["boxes"].float().cpu().numpy(), res["scores"].float().cpu().numpy(),
                res["labels"].cpu().numpy().astype(int))


class GroundingDINOGrounder(_HFZeroShotGrounder):
    """Grounding DINO: one prompt "a. b. c."; box -> query by the best-scoring token span."""
    name = "grounding-dino"
    text_threshold = 0.25  # only for the decoded-phrase fallback

    @property
    def max_text_len(self) -> int:
        return int(getattr(self.model.config, "max_text_len", 256))

    def _chunks(self, phrases: list[str]) -> list[list[int]]:
        """Split phrase indices into prompts that fit the model's text window ([CLS] a . b . [SEP])."""
        tok = self.processor.tokenizer
        budget = self.max_text_len - 2
        chunks, cur, used = [], [], 0
        for i, p in enumerate(phrases):
            n = len(tok(p, add_special_tokens=False)["input_ids"]) + 1  # + the "."
            if cur and used + n > budget:
                chunks.append(cur)
                cur, used = [], 0
            cur.append(i)
            used += n
        if cur:
            chunks.append(cur)
        return chunks

    def _spans(self, prompt: str, phrases: list[str], input_ids: list[int]) -> list[list[int]] | None:
        """Token positions of each phrase in the prompt, or None when they cannot be located."""
        try:
            enc = self.processor.tokenizer(prompt, return_offsets_mapping=True)
        except Exception:  # noqa: BLE001 - slow tokenizers have no offsets
            return None
        ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
        n = min(len(ids), len(input_ids)) - 1  # the processor may have truncated (then its last id is [SEP])
        if n < 1 or ids[:n] != list(input_ids[:n]):
            return None
        spans, start = [], 0
        for p in phrases:
            a, b = start, start + len(p)
            spans.append([t for t, (s, e) in enumerate(offsets[:n]) if e > s and s >= a and e <= b])
            start = b + 2  # ". "
        return spans

    def _detect(self, image, queries):
        w, h = image.size
        phrases = [normalize_query(q) for q in queries]
        valid = [i for i, p in enumerate(phrases) if p]
        all_xyxy, all_scores, all_idx = [], [], []
        for chunk in self._chunks([phrases[i] for i in valid]):
            qi = [valid[c] for c in chunk]
            # two queries that normalize alike share one phrase; boxes go to the first of them
            chunk_phrases, owner = [], []
            for i in qi:
                if phrases[i] not in chunk_phrases:
                    chunk_phrases.append(phrases[i])
                    owner.append(i)
            prompt = ". ".join(chunk_phrases) + "."
            inputs = self.processor(images=image, text=prompt, return_tensors="pt", truncation=True,
                                    max_length=self.max_text_len)
            out = self._forward(inputs)
            input_ids = inputs["input_ids"][0].tolist()
            res = self.processor.post_process_grounded_object_detection(
                out, inputs["input_ids"], threshold=-1.0, text_threshold=self.text_threshold, target_sizes=[(h, w)])[0]
            boxes = res["boxes"].float().cpu().numpy()  # threshold -1 keeps every box, in model order
            spans = self._spans(prompt, chunk_phrases, input_ids)
            if spans is not None and all(spans):
                probs = torch.sigmoid(out.logits[0].float()).cpu()  # (boxes, text positions)
                per_phrase = torch.stack([probs[:, s].max(-1).values for s in spans], 1)  # (boxes, phrases)
                score, best = per_phrase.max(-1)
                all_xyxy.append(boxes)
                all_scores.append(score.numpy())
                all_idx.append(np.array([owner[b] for b in best.tolist()], dtype=int))
            else:
                scores = res["scores"].float().cpu().numpy()
                matched = [match_query(t, chunk_phrases) for t in res["text_labels"]]
                keep = np.array([m is not None for m in matched], bool)
                all_xyxy.append(boxes[keep])
                all_scores.append(scores[keep])
                all_idx.append(np.array([owner[m] for m in matched if m is not None], dtype=int))
        if not all_xyxy:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
        return np.concatenate(all_xyxy).reshape(-1, 4), np.concatenate(all_scores), np.concatenate(all_idx)
