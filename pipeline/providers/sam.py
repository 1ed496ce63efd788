"""The SAM family: the segmenter (``providers.segmenter``: box or click prompts -> masks) and SAM 3 as a
grounder (``providers.grounder.kind: sam3``: a text prompt -> boxes and masks, ``Sam3Grounder`` below).

Any transformers mask-generation checkpoint loads here the normal way (``AutoProcessor`` +
``AutoModelForMaskGeneration``): SAM (``facebook/sam-vit-base``), SAM-HQ, SAM 2
(``facebook/sam2.1-hiera-tiny``) or a local directory with the same files.

The image embedding (the expensive ViT pass) is computed once per image and kept for the last
``cache_images`` images (keyed by a digest of the pixels), so the boxes of one image share it
and the clicks a person makes on the same image in interactive mode do not pay for it again.
Box prompts are decoded in batches of ``decode_batch`` boxes; masks are brought back to the
image's size in chunks that keep the float upsampling under ``MAX_UPSAMPLE_BYTES``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.detections import Detections
from pipeline.hardware import choose_dtype, to_model
from pipeline.images import pixels_digest
from pipeline.providers import hub
from pipeline.providers.base import Grounder, ProviderError, Segmenter, resolve_device

MAX_UPSAMPLE_BYTES = 256 * 2**20  # float32 masks at the image's size, per post-processing chunk


class SamSegmenter(Segmenter):
    name = "sam"
    square_input = True  # longest side to 1024, padded to 1024 x 1024 (SAM 2: stretched to it)

    def __init__(self, model: str, device: str = "auto", cache_images: int = 4, decode_batch: int = 64,
                 dtype: str = "auto"):
        from transformers import AutoModelForMaskGeneration, AutoProcessor
        self.model_id = str(model)
        self.device = resolve_device(device)
        self.cache_images = max(0, int(cache_images))
        self.decode_batch = max(1, int(decode_batch))
        self.dtype = choose_dtype(self.device, dtype)
        source = hub.locate(self.model_id, "segmenter")
        try:
            self.processor = AutoProcessor.from_pretrained(source)
            self.model = AutoModelForMaskGeneration.from_pretrained(
                source, dtype=self.dtype.torch_dtype).to(self.device).eval()
        except Exception as e:  # noqa: BLE001 - say which model and why
            raise ProviderError(f"segmenter {self.model_id!r}: cannot load on {self.device}: "
                                f"{type(e).__name__}: {str(e)[:300]}") from e
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self.embeddings_computed = 0  # how many images paid for the ViT pass (tests, metrics)

    @classmethod
    def from_config(cls, cfg) -> "SamSegmenter":
        return cls(cfg.model, device=cfg.device, cache_images=cfg.cache_images, dtype=cfg.dtype)

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model_id, "device": self.device, "dtype": self.dtype.dtype,
                "architecture": type(self.model).__name__}

    # -- the image embedding, once per image ------------------------------------------------
    def _embedding(self, image: Image.Image, pixel_values: torch.Tensor):
        key = pixels_digest(image)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        with torch.inference_mode():
            emb = self.model.get_image_embeddings(to_model(pixel_values, self.device, self.dtype.torch_dtype))
        self.embeddings_computed += 1
        if self.cache_images:
            self._cache[key] = emb
            while len(self._cache) > self.cache_images:
                self._cache.popitem(last=False)
        return emb

    def _post_process(self, pred_masks: torch.Tensor, inputs) -> np.ndarray:
        """(1, K, 1, h, w) low-res logits of one image -> (K, H, W) bool at the image's size."""
        extra = [inputs["reshaped_input_sizes"]] if "reshaped_input_sizes" in inputs else []
        masks = self.processor.post_process_masks(pred_masks.float().cpu(), inputs["original_sizes"].cpu(),
                                                  *[e.cpu() for e in extra])[0]
        return masks[:, 0].numpy().astype(bool)

    def decode_boxes(self, emb, inputs, batch: int) -> np.ndarray:
        """Masks for ``inputs["input_boxes"]`` (1, K, 4) with ``batch`` boxes per decoder call."""
        boxes = inputs["input_boxes"]
        h, w = (int(v) for v in inputs["original_sizes"][0])
        per_chunk = max(1, MAX_UPSAMPLE_BYTES // max(1, h * w * 4))
        out = []
        for start in range(0, boxes.shape[1], batch):
            with torch.inference_mode():
                res = self.model(image_embeddings=emb, multimask_output=False, input_boxes=to_model(
                    boxes[:, start:start + batch], self.device, self.dtype.torch_dtype))
            pred = res.pred_masks[0]  # (b, 1, h', w')
            for j in range(0, pred.shape[0], per_chunk):
                out.append(self._post_process(pred[None, j:j + per_chunk], inputs))
        return np.concatenate(out) if out else np.zeros((0, h, w), bool)

    def masks_for_boxes(self, image: Image.Image, xyxy) -> np.ndarray:
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        if not len(boxes):
            return np.zeros((0, image.height, image.width), bool)
        image = image.convert("RGB") if image.mode != "RGB" else image
        with self._lock:
            try:
                inputs = self.processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
                emb = self._embedding(image, inputs["pixel_values"])
                return self.decode_boxes(emb, inputs, self.decode_batch)
            except Exception as e:  # noqa: BLE001
                raise ProviderError(f"segmenter {self.model_id!r}: box prompts failed: {type(e).__name__}: {e}") from e

    def mask_for_points(self, image: Image.Image, points, positive) -> tuple[np.ndarray, float]:
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        labels = [int(bool(p)) for p in positive]
        if not len(pts) or len(labels) != len(pts):
            raise ValueError("mask_for_points needs one positive/negative flag per point, and at least one point")
        image = image.convert("RGB") if image.mode != "RGB" else image
        with self._lock:
            try:
                inputs = self.processor(images=image, input_points=[[pts.tolist()]], input_labels=[[labels]],
                                        return_tensors="pt")
                emb = self._embedding(image, inputs["pixel_values"])
                # one click is ambiguous (part or whole?): ask for 3 masks and keep the best-scored one
                with torch.inference_mode():
                    res = self.model(image_embeddings=emb,
                                     input_points=to_model(inputs["input_points"], self.device, self.dtype.torch_dtype),
                                     input_labels=inputs["input_labels"].to(self.device),
                                     multimask_output=len(pts) == 1)
                scores = res.iou_scores[0, 0].float().cpu()
                best = int(scores.argmax())
                mask = self._post_process(res.pred_masks[:, :, best:best + 1], inputs)[0]
                return mask, float(scores[best])
            except Exception as e:  # noqa: BLE001
                raise ProviderError(f"segmenter {self.model_id!r}: point prompts failed: {type(e).__name__}: {e}") \
                    from e


class Sam3Grounder(Grounder):
    """SAM 3 as a grounder (``providers.grounder.kind: sam3``): a text prompt -> every matching object's
    box, score and, from ``segment``, mask (transformers' ``Sam3Model``, e.g. ``facebook/sam3``).

    The image is encoded once per call (``get_vision_features``) and every query reuses it. Scores are
    the model's (query logit x presence), so the ground stage's threshold and NMS apply as for OWLv2.
    At most ``max_candidates`` boxes per query (the best-scored above ``min_score``) get a mask, brought
    to the image's size a few at a time."""
    name = "sam3"
    gives_masks = True
    square_input = True  # stretched to a fixed square (1008 x 1008)

    def __init__(self, model: str, device: str = "auto", min_score: float = 0.0, max_candidates: int = 50,
                 dtype: str = "auto"):
        from transformers import AutoModel, AutoProcessor
        self.model_id = str(model)
        self.device = resolve_device(device)
        self.min_score, self.max_candidates = float(min_score), int(max_candidates)
        self.dtype = choose_dtype(self.device, dtype)
        source = hub.locate(self.model_id, "sam3 grounder")
        try:
            self.processor = AutoProcessor.from_pretrained(source)
            self.model = AutoModel.from_pretrained(source, dtype=self.dtype.torch_dtype).to(self.device).eval()
        except Exception as e:  # noqa: BLE001
            raise ProviderError(f"sam3 grounder {self.model_id!r}: cannot load on {self.device}: "
                                f"{type(e).__name__}: {str(e)[:300]}") from e
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg) -> "Sam3Grounder":
        return cls(cfg.model, device=cfg.device, dtype=cfg.dtype)

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model_id, "device": self.device, "dtype": self.dtype.dtype,
                "min_score": self.min_score}

    def boxes(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        return self._detect(image, queries, masks=False)

    def segment(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        return self._detect(image, queries, masks=True)

    def _detect(self, image: Image.Image, queries: Sequence[str], masks: bool) -> Detections:
        queries = [q for q in dict.fromkeys(str(q).strip() for q in queries) if q]
        if not queries:
            return Detections.empty()
        image = image.convert("RGB") if image.mode != "RGB" else image
        size = [(image.height, image.width)]
        parts = []
        with self._lock:
            try:
                pixel_values = to_model(self.processor(images=image, return_tensors="pt")["pixel_values"],
                                        self.device, self.dtype.torch_dtype)
                with torch.inference_mode():
                    vision = self.model.get_vision_features(pixel_values)
                    for q in queries:
                        text = self.processor(text=q, return_tensors="pt")
                        out = self.model(vision_embeds=vision, input_ids=text["input_ids"].to(self.device),
                                         attention_mask=text["attention_mask"].to(self.device))
                        parts.append(self._query_detections(out, q, size, masks))
            except Exception as e:  # noqa: BLE001
                raise ProviderError(f"sam3 grounder {self.model_id!r}: {type(e).__name__}: {str(e)[:300]}") from e
        return Detections.merge(parts)

    def _query_detections(self, out, query: str, size: list, masks: bool) -> Detections:
        every = self.processor.post_process_object_detection(out, threshold=-1.0, target_sizes=size)[0]
        scores = every["scores"].float().cpu().numpy()
        order = np.argsort(-scores, kind="stable")
        idx = order[scores[order] >= self.min_score][:self.max_candidates]
        found = []
        if masks and len(idx):
            h, w = size[0]
            per_chunk = max(1, MAX_UPSAMPLE_BYTES // max(1, h * w * 4))
            for start in range(0, len(idx), per_chunk):
                sel = torch.as_tensor(idx[start:start + per_chunk])
                part = type(out)(pred_logits=out.pred_logits[:, sel], pred_boxes=out.pred_boxes[:, sel],
                                 pred_masks=out.pred_masks[:, sel], presence_logits=out.presence_logits)
                res = self.processor.post_process_instance_segmentation(part, threshold=-1.0, mask_threshold=0.5,
                                                                        target_sizes=size)[0]
                found += list(res["masks"].cpu().numpy().astype(bool))
        n = len(idx)
        return Detections(xyxy=every["boxes"].float().cpu().numpy()[idx].reshape(-1, 4), scores=scores[idx],
                          labels=[query] * n, queries=[query] * n, masks=found if masks else None)
