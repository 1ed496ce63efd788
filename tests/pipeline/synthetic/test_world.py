"""The synthetic world: the same seed and index give the same scene, and its truth is exact (each box is the
extent of the pixels its object shows, found by drawing the scene again without that object)."""
import numpy as np
import pytest

from pipeline.synthetic import shapes
from pipeline.synthetic.world import World

SMALL = dict(size=(320, 240))


def test_same_seed_and_index_same_scene_in_any_order():
    a = World(3, **SMALL)
    first = a.scene(5)
    for i in (9, 0, 5):  # other scenes in between change nothing
        a.scene(i)
    again = World(3, **SMALL).scene(5)
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert np.array_equal(first.boxes, again.boxes) and first.labels == again.labels


def test_other_seed_or_index_other_scene():
    base = np.asarray(World(3, **SMALL).scene(5).image)
    assert not np.array_equal(base, np.asarray(World(4, **SMALL).scene(5).image))
    assert not np.array_equal(base, np.asarray(World(3, **SMALL).scene(6).image))


@pytest.mark.parametrize("index", range(12))
def test_box_is_the_extent_of_the_pixels_the_object_shows(index):
    world = World(7, blur_share=0.0, **SMALL)  # blur spreads an edge by design; the truth is the drawn extent
    scene = world.scene(index)
    full = np.asarray(scene.image).astype(int)
    for k in range(len(scene.labels)):
        without = np.asarray(world.scene(index, omit=k + 1).image).astype(int)
        ys, xs = np.nonzero(np.abs(full - without).sum(axis=-1))
        assert len(xs), f"object {k} ({scene.labels[k]}) shows no pixel"
        assert scene.boxes[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], (index, k)


def test_what_a_world_holds():
    world = World(11, **SMALL)
    scenes = [world.scene(i) for i in range(80)]
    w, h = SMALL["size"]
    counts = [len(s.labels) for s in scenes]
    assert 0 in counts and max(counts) >= 3, counts  # empty scenes and crowded ones
    labels = {lab for s in scenes for lab in s.labels}
    assert labels == set(shapes.CLASSES)
    areas = []
    for s in scenes:
        assert s.size == (w, h) and s.boxes.shape == (len(s.labels), 4)
        if len(s.labels):
            b = s.boxes
            assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
            assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
            areas += ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (w * h)).tolist()
        assert all(v >= world.config.min_visible for v in s.visible)
    assert min(areas) < 0.03 and max(areas) > 0.25, (min(areas), max(areas))  # ~1 % to 40 % of the image
    assert any(v < 1.0 for s in scenes for v in s.visible), "some objects are partly hidden"
    assert any(s.meta["blur"] > 0 for s in scenes) and any(s.meta["blur"] == 0 for s in scenes)


def test_classes_a_world_does_not_have_are_refused():
    with pytest.raises(ValueError, match="unknown classes"):
        World(0, classes=("Stop Sign", "Unicorn"))
    only = World(0, classes=("Drone",), empty_share=0.0, **SMALL)
    assert {lab for i in range(10) for lab in only.scene(i).labels} == {"Drone"}
