"""The SAM family as the segmenter (``providers.segmenter``): box or click prompts -> masks.

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

import hashlib
import threading
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

from pipeline.providers.base import ProviderError, Segmenter
from pipeline.providers.hf_detectors import resolve_device

MAX_UPSAMPLE_BYTES = 256 * 2**20  # float32 masks at the image's size, per post-processing chunk


def image_digest(image: Image.Image) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class SamSegmenter(Segmenter):
    name = "sam"

    def __init__(self, model: str, device: str = "auto", cache_images: int = 4, decode_batch: int = 64):
        from transformers import AutoModelForMaskGeneration, AutoProcessor
        self.model_id = str(model)
        self.device = resolve_device(device)
        self.cache_images = max(0, int(cache_images))
        self.decode_batch = max(1, int(decode_batch))
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_id)
            self.model = AutoModelForMaskGeneration.from_pretrained(self.model_id).to(self.device).eval()
        except Exception as e:  # noqa: BLE001 - say which model and why
            raise ProviderError(f"segmenter {self.model_id!r}: cannot load on {self.device}: "
                                f"{type(e).__name__}: {str(e)[:300]}") from e
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self.embeddings_computed = 0  # how many images paid for the ViT pass (tests, metrics)

    @classmethod
    def from_config(cls, cfg) -> "SamSegmenter":
        return cls(cfg.model, device=cfg.device, cache_images=cfg.cache_images)

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model_id, "device": self.device,
                "architecture": type(self.model).__name__}

    # -- the image embedding, once per image ------------------------------------------------
    def _embedding(self, image: Image.Image, pixel_values: torch.Tensor):
        key = image_digest(image)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        with torch.inference_mode():
            emb = self.model.get_image_embeddings(pixel_values.to(self.device))
        self.embeddings_computed += 1
        if self.cache_images:
            self._cache[key] = emb
            while len(self._cache) > self.cache_images:
                self._cache.popitem(last=False)
        return emb

    def _post_process(self, pred_masks: torch.Tensor, inputs) -> np.ndarray:
        """(1, K, 1, h, w) low-res logits of one image -> (K, H, W) bool at the image's size."""
        extra = [inputs["reshaped_input_sizes"]] if "reshaped_input_sizes" in inputs else []
        masks = self.processor.post_process_masks(pred_masks.cpu(), inputs["original_sizes"].cpu(),
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
                res = self.model(image_embeddings=emb, input_boxes=boxes[:, start:start + batch].to(self.device),
                                 multimask_output=False)
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
                    res = self.model(image_embeddings=emb, input_points=inputs["input_points"].to(self.device),
                                     input_labels=inputs["input_labels"].to(self.device),
                                     multimask_output=len(pts) == 1)
                scores = res.iou_scores[0, 0].float().cpu()
                best = int(scores.argmax())
                mask = self._post_process(res.pred_masks[:, :, best:best + 1], inputs)[0]
                return mask, float(scores[best])
            except Exception as e:  # noqa: BLE001
                raise ProviderError(f"segmenter {self.model_id!r}: point prompts failed: {type(e).__name__}: {e}") \
                    from e
