"""Masks <-> Label Studio brush RLE <-> polygons, on constructed masks with known pixel counts."""
import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.detections import Detections, encode_mask, mask_box
from pipeline.images import open_image
from pipeline.labelstudio.masks import MAX_POLYGON_POINTS, mask_to_rle, outline, polygon_to_mask, rle_to_mask


def ring(h=60, w=80):
    """A 30 x 40 square with a 10 x 10 hole: 1200 - 100 = 1100 pixels."""
    m = np.zeros((h, w), bool)
    m[10:40, 20:60] = True
    m[20:30, 35:45] = False
    return m


def test_brush_rle_round_trip_is_exact_with_holes_and_border():
    m = ring()
    assert m.sum() == 1100
    back = rle_to_mask(mask_to_rle(m), 80, 60)
    assert back.dtype == bool and back.sum() == 1100 and (back == m).all()
    # touching every border, and the whole image
    edge = np.zeros((37, 53), bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    assert (rle_to_mask(mask_to_rle(edge), 53, 37) == edge).all()
    full = np.ones((17, 23), bool)
    assert rle_to_mask(mask_to_rle(full), 23, 17).sum() == 17 * 23
    # long runs (> 65536 values: Label Studio's longest run field) survive
    big = np.ones((300, 300), bool)
    assert rle_to_mask(mask_to_rle(big), 300, 300).sum() == 90000


def test_rle_size_mismatch_is_refused():
    with pytest.raises(ValueError, match="original_width"):
        rle_to_mask(mask_to_rle(ring()), 60, 80 + 1)


def test_polygon_of_a_hole_free_mask_fills_back_exactly():
    rng = np.random.default_rng(1)
    for _ in range(100):
        m = np.zeros((60, 80), np.uint8)
        cv2.ellipse(m, (int(rng.integers(0, 80)), int(rng.integers(0, 60))),
                    (int(rng.integers(2, 30)), int(rng.integers(2, 30))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        pts = outline(m, max_points=10**6, tolerance=0)
        assert (polygon_to_mask(pts, 80, 60) == m.astype(bool)).all()


def test_polygon_keeps_the_outer_outline_and_the_largest_part():
    m = ring()
    m[50:55, 2:7] = True  # a second, smaller part: 25 px
    pts = outline(m, max_points=10**6, tolerance=0)
    filled = polygon_to_mask(pts, 80, 60)
    assert filled.sum() == 1200  # the hole is filled in, the small part left out
    assert not filled[50:55, 2:7].any()
    # vertices sit on pixel centres: the square's corners are at 20.5 .. 59.5, 10.5 .. 39.5
    assert pts[:, 0].min() == 20.5 and pts[:, 0].max() == 59.5 and pts[:, 1].min() == 10.5


def test_simplified_polygon_has_few_points_and_stays_close():
    yy, xx = np.mgrid[:1080, :1920]
    m = ((xx - 960) ** 2 / 400 ** 2 + (yy - 540) ** 2 / 300 ** 2) <= 1  # a big ellipse
    m |= (np.abs(xx - 960) < 20) & (yy < 540)  # with a thin spike to the top border
    pts = outline(m)
    assert 3 <= len(pts) <= MAX_POLYGON_POINTS
    back = polygon_to_mask(pts, 1920, 1080)
    iou = (back & m).sum() / (back | m).sum()
    assert iou > 0.99, iou
    assert back[0, 960]  # the spike still reaches the border
    assert len(outline(m, max_points=8)) <= 8


def test_degenerate_masks():
    assert len(outline(np.zeros((10, 10), bool))) == 0
    one = np.zeros((10, 10), bool)
    one[3, 3] = True
    assert len(outline(one)) == 0  # a single pixel has no outline with an area
    assert mask_box(one).tolist() == [3, 3, 4, 4]
    assert mask_box(np.zeros((4, 4))).tolist() == [0, 0, 0, 0]
    assert mask_box(ring()).tolist() == [20, 10, 60, 40]


def test_detections_keep_masks_as_compact_rle():
    m = ring()
    d = Detections(xyxy=[[20, 10, 60, 40], [0, 0, 5, 5]], scores=[0.9, 0.1], labels=["a", "b"], masks=[m, None])
    assert d.mask_areas().tolist() == [1100, 0] and d.has_mask().tolist() == [True, False]
    assert (d.mask(0) == m).all() and d.mask(1) is None
    assert d[[1, 0]].mask_areas().tolist() == [0, 1100]
    merged = Detections.merge([d, d[[0]]])
    assert merged.mask_areas().tolist() == [1100, 0, 1100]
    d.set_masks([1], [np.ones((60, 80), bool)])
    assert d.mask_areas().tolist() == [1100, 4800]
    assert d.records()[0]["mask_pixels"] == 1100
    assert encode_mask(m)["size"] == [60, 80]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_masks_of_an_exif_rotated_image_are_in_upright_pixels(tmp_path, orientation):
    """A mask found on the upright image encodes to an RLE of the upright size that decodes onto the same
    red square a person sees."""
    upright = Image.new("RGB", (300, 200), "white")
    upright.paste((255, 0, 0), (30, 40, 90, 80))
    undo = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    stored = upright.transpose(undo[orientation]) if undo[orientation] else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    stored.save(path, exif=exif)
    im = open_image(path)
    assert im.size == (300, 200)
    a = np.asarray(im).astype(int)
    red = (a[..., 0] > 200) & (a[..., 1] < 80)
    assert red.sum() == 60 * 40
    back = rle_to_mask(mask_to_rle(red), *im.size)
    assert back.shape == (200, 300) and back.sum() == 2400 and mask_box(back).tolist() == [30, 40, 90, 80]
