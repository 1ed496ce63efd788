"""The SAM-family segmenter: tiny random SAM and SAM 2 built from configs, loaded through the registry's
real path (AutoProcessor + AutoModelForMaskGeneration), box prompts batched per image with the image
embedding computed once, click prompts."""
import numpy as np
import pytest
from PIL import Image

from pipeline.config import SegmenterProvider
from pipeline.providers import registry
from pipeline.providers.base import ProviderError
from pipeline.providers.sam import SamSegmenter

W, H = 300, 200


@pytest.fixture(scope="module", params=["sam", "sam2"])
def segmenter(request, tiny_sam_dir, tiny_sam2_dir):
    path = tiny_sam_dir if request.param == "sam" else tiny_sam2_dir
    registry.providers.clear()
    seg = registry.get_segmenter(SegmenterProvider(model=str(path), device="cpu"))
    yield seg
    registry.providers.clear()


def scene():
    im = Image.new("RGB", (W, H), (30, 90, 160))
    im.paste((220, 20, 20), (40, 50, 120, 150))
    return im


def test_loads_through_the_registry_once(segmenter, tiny_sam_dir):
    assert isinstance(segmenter, SamSegmenter)
    assert segmenter.describe()["architecture"] in ("SamModel", "Sam2Model")
    again = registry.get_segmenter(SegmenterProvider(model=segmenter.model_id, device="cpu"))
    assert again is segmenter


def test_box_prompts_one_mask_per_box_at_the_image_size(segmenter):
    im = scene()
    before = segmenter.embeddings_computed
    masks = segmenter.masks_for_boxes(im, [[40, 50, 120, 150], [0, 0, 30, 30], [200, 100, 299, 199]])
    assert masks.shape == (3, H, W) and masks.dtype == bool
    assert segmenter.embeddings_computed == before + 1
    # the same image again (another request, a click): the embedding is reused
    segmenter.masks_for_boxes(im.copy(), [[10, 10, 20, 20]])
    assert segmenter.embeddings_computed == before + 1
    segmenter.masks_for_boxes(Image.new("RGB", (W, H)), [[10, 10, 20, 20]])
    assert segmenter.embeddings_computed == before + 2
    assert segmenter.masks_for_boxes(im, np.zeros((0, 4))).shape == (0, H, W)


def test_batched_decoding_equals_one_box_at_a_time(segmenter):
    im = scene()
    boxes = [[40, 50, 120, 150], [0, 0, 30, 30], [200, 100, 299, 199], [10, 20, 290, 190]]
    inputs = segmenter.processor(images=im, input_boxes=[boxes], return_tensors="pt")
    emb = segmenter._embedding(im, inputs["pixel_values"])
    batched = segmenter.decode_boxes(emb, inputs, batch=len(boxes))
    single = segmenter.decode_boxes(emb, inputs, batch=1)
    assert (batched == single).mean() > 0.999  # float rounding may flip a pixel on a logit of ~0


def test_clicks(segmenter):
    im = scene()
    mask, quality = segmenter.mask_for_points(im, [[80, 100]], [True])
    assert mask.shape == (H, W) and mask.dtype == bool and np.isfinite(quality)
    mask2, _ = segmenter.mask_for_points(im, [[80, 100], [5, 5]], [True, False])
    assert mask2.shape == (H, W)
    with pytest.raises(ValueError, match="one positive/negative flag per point"):
        segmenter.mask_for_points(im, [[80, 100]], [True, False])


def test_upsampling_is_chunked_to_bound_memory(segmenter, monkeypatch):
    """Masks are brought to the image's size a few boxes at a time, not all at once."""
    from pipeline.providers import sam
    seen = []
    real = segmenter._post_process
    monkeypatch.setattr(sam, "MAX_UPSAMPLE_BYTES", W * H * 4 * 2)  # two masks per chunk
    monkeypatch.setattr(segmenter, "_post_process", lambda pred, inputs: seen.append(pred.shape[1]) or
                        real(pred, inputs))
    masks = segmenter.masks_for_boxes(scene(), [[0, 0, 10, 10]] * 5)
    assert masks.shape[0] == 5 and seen == [2, 2, 1]


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ProviderError, match="segmenter model .*nowhere.*: no such directory") as e:
        SamSegmenter(str(tmp_path / "nowhere"), device="cpu")
    assert "label-factory up --models tiny" in str(e.value)  # and how to get one


def test_the_tiny_models_are_random_but_real_architectures(tiny_sam_dir, tiny_sam2_dir):
    from transformers import AutoConfig
    assert AutoConfig.from_pretrained(tiny_sam_dir).model_type == "sam"
    assert AutoConfig.from_pretrained(tiny_sam2_dir).model_type == "sam2"
