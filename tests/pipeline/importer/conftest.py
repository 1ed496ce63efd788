from __future__ import annotations

import pytest

from tests.doubles.images import bomb_png, encode, jpeg, pattern_image


@pytest.fixture(scope="module")
def images():
    a = pattern_image(1)
    return {
        "a_png": encode(a, "PNG"),
        "a_jpg_reencoded": encode(a, "JPEG", quality=70),
        "b_rot": jpeg(pattern_image(2, (120, 60)), 6),   # stored upright: 60x120
        "c_png": encode(pattern_image(3), "PNG"),
        "d_jpg": encode(pattern_image(4), "JPEG", quality=90),
        "e_jpg": encode(pattern_image(5), "JPEG", quality=90),
        "truncated": encode(pattern_image(6), "JPEG", quality=90)[:700],
        "bomb": bomb_png(),
    }
