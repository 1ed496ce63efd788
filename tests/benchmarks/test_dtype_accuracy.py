"""benchmarks/dtype_accuracy.py's comparisons: boxes matched one-to-one by IoU, proposals index by index,
masks empty on both sides left out."""
from __future__ import annotations

import os

import numpy as np

_cache_setting = os.environ.get("LF_ANSWER_CACHE")
from benchmarks.dtype_accuracy import mask_iou, matched_iou, pairwise_iou  # noqa: E402

if _cache_setting is None:
    os.environ.pop("LF_ANSWER_CACHE", None)


def test_matched_iou_pairs_each_box_with_its_best_partner_whatever_the_order():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32)
    b = np.array([[51, 50, 61, 60], [0, 0, 10, 10], [20, 20, 30, 32]], np.float32)
    iou = np.sort(matched_iou(a, b))
    assert np.allclose(iou, sorted([1.0, 100 / 120, 90 / 110]))


def test_a_box_without_partner_counts_zero():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    assert sorted(matched_iou(a, a[:1]).tolist()) == [0.0, 1.0]
    assert matched_iou(a, np.zeros((0, 4))).tolist() == [0.0, 0.0]
    assert matched_iou(np.zeros((0, 4)), np.zeros((0, 4))).size == 0


def test_pairwise_iou_is_index_by_index():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    assert np.allclose(pairwise_iou(a, b), [1.0, 50 / 150])


def test_mask_iou_leaves_out_masks_empty_on_both_sides():
    a = np.zeros((3, 4, 4), bool)
    b = np.zeros((3, 4, 4), bool)
    a[0, :2], b[0, :1] = True, True  # IoU 4/8
    a[1, :, :2], b[1, :, 2:] = True, True  # disjoint: 0
    iou, empty = mask_iou(a, b)
    assert iou.tolist() == [0.5, 0.0] and empty == 1
