from PIL import Image

from pipeline.crops import crop, padded_box


def test_padding_is_fraction_of_box_size():
    assert padded_box([100, 100, 200, 150], 1000, 1000, 0.1) == (90, 95, 210, 155)


def test_padding_clamped_at_borders():
    assert padded_box([0, 0, 50, 50], 60, 60, 0.5) == (0, 0, 60, 60)
    assert padded_box([-5, -5, 70, 70], 60, 60, 0.0) == (0, 0, 60, 60)


def test_never_empty():
    l, t, r, b = padded_box([59.5, 59.5, 59.6, 59.6], 60, 60, 0.0)
    assert r > l and b > t and r <= 60 and b <= 60
    im = Image.new("RGB", (60, 60))
    assert crop(im, [59.5, 59.5, 59.6, 59.6]).size[0] >= 1
