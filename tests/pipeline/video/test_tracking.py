"""ByteTrack association on constructed detections whose identities are known, and the quality figures
(MOTA, IDF1, HOTA) that count identity switches."""
from __future__ import annotations

import numpy as np

from pipeline.detections import Detections
from pipeline.video.quality import tracking_quality
from pipeline.video.tracking import Tracker


def _frame(boxes, labels=None, scores=None):
    n = len(boxes)
    return Detections(xyxy=np.array(boxes, float).reshape(-1, 4), scores=scores if scores is not None else [0.9] * n,
                      labels=labels or ["ball"] * n)


def _run(frames, step=1, fps=30.0, **kw):
    """Track ids per frame (-1: none) for a list of per-frame box lists, fed every ``step`` frames."""
    t = Tracker(fps, **kw)
    out = {}
    for i in range(0, len(frames), step):
        d = frames[i] if isinstance(frames[i], Detections) else _frame(frames[i])
        out[i] = list(t.update(d, i / fps, key=i))
        for key, row, tid in t.late:
            out[key][row] = tid
    return out


def test_two_objects_keep_their_ids_across_sparse_detection_frames():
    # two boxes moving right at 3 px/frame, seen every 5th frame: 15 px apart between updates
    frames = [[[10 + 3 * i, 10, 50 + 3 * i, 50], [10 + 3 * i, 100, 50 + 3 * i, 140]] for i in range(60)]
    ids = _run(frames, step=5)
    first = ids[0]
    assert -1 not in first and len(set(first)) == 2  # the first boxes get their track (late) too
    assert all(v == first for v in ids.values())


def test_an_object_hidden_for_a_while_comes_back_with_its_id_and_a_long_absence_starts_a_new_track():
    box = lambda i: [10 + 2 * i, 10, 50 + 2 * i, 50]  # noqa: E731
    frames = [[box(i)] if not 20 <= i < 40 else [] for i in range(60)]  # hidden 0.67 s
    ids = _run(frames, lost_seconds=1.0)
    assert {ids[i][0] for i in range(60) if ids[i]} == {ids[0][0]}
    frames = [[box(i)] if not 20 <= i < 80 else [] for i in range(100)]  # hidden 2 s
    ids = _run(frames, lost_seconds=1.0)
    assert ids[0][0] != ids[90][0] and ids[90][0] > 0


def test_labels_are_tracked_apart_and_a_cut_ends_every_track():
    t = Tracker(30.0)
    both = _frame([[0, 0, 40, 40], [0, 0, 40, 40]], labels=["ball", "crate"])
    t.update(both, 0.0)
    a = t.update(both, 1 / 30)
    assert a[0] != a[1] and (a > 0).all()
    t.cut()
    t.update(both, 2 / 30)
    b = t.update(both, 3 / 30)
    assert set(a).isdisjoint(b)


def _as_track(frames_ids, boxes_of):
    rows = [(f, tid, boxes_of(f, k)) for f, ids in frames_ids.items() for k, tid in enumerate(ids)]
    return Detections(xyxy=[r[2] for r in rows], scores=[1.0] * len(rows), labels=["ball"] * len(rows),
                      extra={"frame": [r[0] for r in rows], "track": [r[1] for r in rows]})


def test_quality_counts_an_identity_switch():
    # objects 1 and 2 on parallel paths for 40 frames; the prediction swaps their ids at frame 20
    box = lambda f, k: [10 + f, 10 + 100 * k, 50 + f, 50 + 100 * k]  # noqa: E731
    truth = _as_track({f: [1, 2] for f in range(40)}, box)
    truth.extra["object"] = truth.extra["track"]
    perfect = _as_track({f: [7, 8] for f in range(40)}, box)
    swapped = _as_track({f: ([7, 8] if f < 20 else [8, 7]) for f in range(40)}, box)
    q = tracking_quality(truth, perfect)
    assert (q["MOTA"], q["IDF1"], q["IDSW"]) == (1.0, 1.0, 0) and q["HOTA"] > 0.95
    q = tracking_quality(truth, swapped)
    assert q["IDSW"] == 2 and q["MOTA"] == (80 - 2) / 80 and q["IDF1"] == 0.5
    assert q["HOTA"] < 0.8


def test_a_box_of_another_label_never_matches():
    box = lambda f, k: [10, 10, 50, 50]  # noqa: E731
    truth = _as_track({f: [1] for f in range(10)}, box)
    truth.extra["object"] = truth.extra["track"]
    other = _as_track({f: [5] for f in range(10)}, box)
    other.relabel(["crate"] * len(other))
    q = tracking_quality(truth, other)
    assert q["CLR_TP"] == 0 and q["CLR_FP"] == 10 and q["CLR_FN"] == 10


def test_the_tracker_keeps_identities_where_the_truth_crosses_an_occluder(moving):
    w, _ = moving
    truth = w.tracks()
    t = Tracker(w.fps)
    track = np.full(len(truth), -1)
    frames = truth.extra["frame"]
    rows_of = {}
    for f in range(0, w.frames, 5):
        if f in w.cuts:
            t.cut()
        rows = np.flatnonzero(frames == f)
        rows_of[f] = rows
        track[rows] = t.update(truth[rows], f / w.fps, key=f)
        for key, k, tid in t.late:
            track[rows_of[key][k]] = tid
    seen = truth[np.isin(frames, list(rows_of))]
    seen.extra["track"] = track[np.isin(frames, list(rows_of))]
    tracked = seen.extra["track"] >= 0
    assert tracked.mean() > 0.95
    pairs = set(zip(seen.extra["object"][tracked], seen.extra["track"][tracked]))
    objects = set(seen.extra["object"].tolist())
    assert len(pairs) == len({t for _, t in pairs}) == len(objects) >= 5  # one track per object
