"""backends.base.utils: upstream label_studio_ml.utils' helpers, same names and meaning."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from backends.base import LabelConfigError, LabelStudioMLBase
from backends.base.utils import (
    DATA_UNDEFINED_NAME,
    InMemoryLRUDictCache,
    compare_nested_structures,
    get_choice,
    get_first_tag_keys,
    get_image_size,
    get_single_tag_keys,
    is_preload_needed,
    is_skipped,
    is_valid_url,
    match_labels,
)

CHOICES = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
           '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')
TWO_CONTROLS = ('<View><Image name="image" value="$image"/><Text name="text" value="$text"/>'
                '<Choices name="c" toName="text"><Choice value="a"/></Choices>'
                '<RectangleLabels name="box" toName="image"><Label value="Car"/></RectangleLabels></View>')


def _parsed(config: str) -> dict:
    return LabelStudioMLBase(project_id="1", label_config=config).parsed_label_config


def test_single_and_first_tag_keys():
    from_name, to_name, value, labels = get_single_tag_keys(_parsed(CHOICES), "Choices", "Text")
    assert (from_name, to_name, value) == ("sentiment", "text", "text") and sorted(labels) == ["Negative", "Positive"]
    with pytest.raises(LabelConfigError, match="<RectangleLabels>"):
        get_single_tag_keys(_parsed(CHOICES), "RectangleLabels", "Image")
    with pytest.raises(LabelConfigError, match="exactly one control tag"):
        get_single_tag_keys(_parsed(TWO_CONTROLS), "Choices", "Text")
    name, info = get_first_tag_keys(_parsed(TWO_CONTROLS), "RectangleLabels", "Image")
    assert name == "box" and info["to_name"] == ["image"]
    assert get_first_tag_keys(_parsed(TWO_CONTROLS), "RectangleLabels", "Text") == (None, None)
    assert DATA_UNDEFINED_NAME == "$undefined$"


def test_task_helpers():
    skipped = {"annotations": [{"was_cancelled": True, "result": []}]}
    assert is_skipped(skipped) and is_skipped({"annotations": [{"skipped": True}]})
    assert not is_skipped({"annotations": [{"result": []}]})
    assert not is_skipped({"annotations": [{"skipped": True}, {"result": []}]})  # only a lone annotation counts
    done = {"annotations": [{"result": [{"value": {"choices": ["Positive", "Negative"]}}]}]}
    assert get_choice(done) == "Positive"


@pytest.mark.parametrize("orientation,expected", [(None, (64, 48)), (1, (64, 48)), (6, (48, 64)), (8, (48, 64))])
def test_image_size_follows_exif_rotation(tmp_path, orientation, expected):
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.new("RGB", (64, 48)).save(buf, "JPEG", exif=exif.tobytes())
    path = tmp_path / "photo.jpg"
    path.write_bytes(buf.getvalue())
    assert get_image_size(path) == expected


def test_lru_cache_drops_the_least_recently_used():
    c = InMemoryLRUDictCache(capacity=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # "b" is now the oldest
    c.put("c", 3)
    assert "b" not in c and c.get("b") is None and c.get("a") == 1 and c.get("c") == 3
    c.put("a", 10)
    assert c.get("a") == 10 and len(c.cache) == 2


def test_match_labels_per_line():
    assert match_labels("positive\nNegativ\nneutral-ish", ["Positive", "Negative", "Neutral"]) == \
        ["Positive", "Negative", "Neutral"]


@pytest.mark.parametrize("value,expected", [
    ("/data/upload/3/a.jpg", True), ("upload/3/a.jpg", True), ("/upload/3/a.jpg", True),
    ("/data/local-files/?d=dir/a.jpg", True), ("/storage-data/uploaded/?filepath=upload/3/a.jpg", True),
    ("s3://bucket/a.jpg", True), ("gs://bucket/a.jpg", True), ("azure-blob://c/a.jpg", True),
    ("https://example.org/a.jpg", True), ("/data/other/a.jpg", False), ("just some words", False),
    ("mailto:someone", False),
])
def test_is_preload_needed(value, expected):
    assert is_preload_needed(value) is expected


def test_is_preload_needed_for_existing_local_paths(tmp_path):
    f = tmp_path / "note.txt"
    f.write_text("x")
    assert is_preload_needed(str(f)) and not is_preload_needed(str(tmp_path / "missing.txt"))
    assert is_valid_url("http://127.0.0.1:8080/x") and not is_valid_url("/data/upload/1.jpg")


def test_compare_nested_structures():
    compare_nested_structures({"a": [1, {"x": 0.30000001}], "b": "s"}, {"a": [1, {"x": 0.3}], "b": "s"})
    compare_nested_structures([0.0], [1e-13])
    with pytest.raises(AssertionError, match=r"at \.a\[1\]\.x"):
        compare_nested_structures({"a": [1, {"x": 0.31}]}, {"a": [1, {"x": 0.3}]})
    with pytest.raises(AssertionError, match="keys differ"):
        compare_nested_structures({"a": 1}, {"b": 1})
    with pytest.raises(AssertionError, match="lengths differ"):
        compare_nested_structures([1, 2], [1])
    compare_nested_structures([0.31], [0.3], abs=0.02)
