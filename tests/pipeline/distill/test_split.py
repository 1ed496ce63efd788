from collections import Counter

import pytest

from pipeline.distill.split import assign, ids_digest, parse_ratios


def test_split_depends_only_on_the_task_id():
    ids = list(range(1, 400))
    first = assign(ids)
    assert assign(list(reversed(ids))) == first  # order does not matter
    grown = assign(ids + list(range(400, 800)))  # the project grows: nobody changes split
    assert {t: grown[t] for t in ids} == first
    assert {t: assign(ids[:200])[t] for t in ids[:200]} == {t: first[t] for t in ids[:200]}


def test_ratios_are_followed_on_a_large_project():
    counts = Counter(assign(range(1, 10001), (0.7, 0.2, 0.1)).values())
    assert abs(counts["train"] / 10000 - 0.7) < 0.02
    assert abs(counts["val"] / 10000 - 0.2) < 0.02
    assert abs(counts["test"] / 10000 - 0.1) < 0.02


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (1, 0, 0), (0, 0, 1), (0, 1, 0), (0.5, 0, 0.5)])
def test_tiny_sets_never_leave_train_or_val_empty(ratios):
    assert assign([42], ratios) == {42: "train"}  # one image: train only (train refuses the export)
    for n in range(2, 7):
        for start in range(1, 60, 7):
            ids = list(range(start, start + n))
            out = assign(ids, ratios)
            got = Counter(out.values())
            assert got["train"] >= 1 and got["val"] >= 1, (ratios, ids, out)
            assert assign(ids, ratios) == out  # deterministic


def test_two_images_with_all_train_ratios_give_one_to_val():
    out = assign([5, 9], (1, 0, 0))
    assert sorted(out.values()) == ["train", "val"]


def test_parse_ratios():
    assert parse_ratios("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("0.8,0.2", "a,b,c", "-1,1,1", "0,0,0"):
        with pytest.raises(ValueError, match="split ratios"):
            parse_ratios(bad)


def test_ids_digest_names_the_set_not_the_order():
    assert ids_digest([3, 1, 2]) == ids_digest([1, 2, 3]) != ids_digest([1, 2, 4])
