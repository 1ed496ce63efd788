"""The video cascade on a generated video, with the world's own detector (ColourGrounder) and a scripted
VLM: tracks match the true trajectories across the cut and the occluder, verify asks once per track, a
track verify rejects is dropped with the reason, and a deadline stops the run early with what it needs."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import deadline
from pipeline.cascade import Pipeline
from pipeline.config import VideoSettings, parse_project
from pipeline.labelstudio.tracks import per_frame, read_tracks, video_prediction
from pipeline.video import synthetic
from pipeline.video.quality import tracking_quality
from pipeline.video.run import VideoCascade, every_frame
from tests.doubles.providers import ScriptedVLM

CFG = {"project_name": "video", "target_object": "ball", "queries": {"ball": ["ball"], "crate": ["crate"]},
       "stages": {"filter": False}}


def _pipeline(vlm=None, **cfg):
    return Pipeline(parse_project({**CFG, **cfg}), vlm=vlm or ScriptedVLM(lambda im, q: 0.9),
                    grounder=synthetic.ColourGrounder())


def test_tracks_follow_the_true_trajectories_through_the_cut_and_the_occluder(moving):
    w, path = moving
    vlm = ScriptedVLM(lambda im, q: 0.9)
    res = VideoCascade(_pipeline(vlm)).run(path)
    assert res.cuts == w.cuts
    assert res.counts["keyframes"] == 4 and res.counts["between"] == 20  # cuts + every 30; every 5 between
    kept = res.kept_tracks()
    objects = set(w.tracks().extra["object"].tolist())
    assert len(kept) == len(objects) >= 5
    assert sum(vlm.batches) == len(kept) and len(vlm.calls) == len(kept)  # verify once per track
    i = res.info
    layout = _video_layout()
    pred, dropped = video_prediction(layout, res.boxes, i.width, i.height, i.fps, i.frames, i.duration,
                                     res.max_gap, "v1")
    assert not dropped and len(pred["result"]) == len(kept)
    shown = per_frame(read_tracks(pred["result"], i.width, i.height), i.frames)  # what the video editor shows
    q = tracking_quality(w.tracks(), shown, i.frames)
    assert q["IDSW"] == 0 and q["MOTA"] > 0.85 and q["IDF1"] > 0.9, q
    keyframes = sum(len(r["value"]["sequence"]) for r in pred["result"])
    assert keyframes < 0.6 * res.counts["keyframes"] * 3 + res.counts["between"] * 3  # fewer than the boxes seen


def test_a_track_verify_rejects_is_dropped_with_the_reason(moving):
    _, path = moving
    # the VLM says no to crops that are mostly the crates' blue: every crate track goes
    res = VideoCascade(_pipeline(ScriptedVLM(lambda im, q: 0.1 if _blue(im) > 0.3 else 0.9))).run(path)
    crates = [t for t, v in res.tracks.items() if v["label"] == "crate"]
    assert crates and all(not res.tracks[t]["kept"] for t in crates)
    verified = [t for t in crates if res.tracks[t]["boxes"] >= 2]  # the others: too short to verify
    assert verified and all(res.tracks[t]["reason"] == "verify: track P(yes) 0.100 < 0.5" for t in verified)
    assert set(res.boxes.active().labels) == {"ball"}
    assert {r.split(":")[0] for r in res.boxes.reason[res.boxes.labels == "crate"]} <= {"verify", "track"}


def test_keyframes_only_and_a_short_track_is_dropped(moving):
    _, path = moving
    res = VideoCascade(_pipeline(), VideoSettings(detect_every=0, keyframe_every=15, min_track_boxes=3)).run(path)
    assert res.counts["between"] == 0 and res.counts["keyframes"] == 8 and res.max_gap == 15
    short = [v for v in res.tracks.values() if v["boxes"] < 3]
    assert all(not v["kept"] and "min_track_boxes=3" in v["reason"] for v in short)


def test_under_a_deadline_the_run_stops_once_the_rest_cannot_fit(moving, monkeypatch):
    _, path = moving
    monkeypatch.setenv("LF_ANSWER_CACHE", "0")
    import time as _time
    slow = synthetic.ColourGrounder()
    boxes = slow.boxes
    slow.boxes = lambda image, queries: (_time.sleep(0.3), boxes(image, queries))[1]
    pipe = Pipeline(parse_project(CFG), vlm=ScriptedVLM(lambda im, q: 0.9), grounder=slow)
    with deadline.within(2.0, "PREDICT_DEADLINE"):
        t0 = _time.monotonic()
        with pytest.raises(deadline.DeadlineExceeded, match=r"of 120 frames took .* the rest would take about"):
            VideoCascade(pipe).run(path)
    assert _time.monotonic() - t0 < 2.0


def test_the_every_frame_cascade_asks_the_grounder_on_every_frame(moving):
    w, path = moving
    grounder = synthetic.ColourGrounder()
    pipe = Pipeline(parse_project(CFG), vlm=ScriptedVLM(lambda im, q: 0.9), grounder=grounder)
    res = every_frame(pipe, path)
    assert grounder.calls == w.frames
    q = tracking_quality(w.tracks(), res.boxes.active(), w.frames)
    assert q["MOTA"] > 0.8 and q["IDF1"] > 0.85


def _blue(image) -> float:
    a = np.asarray(image.convert("RGB")).astype(int)
    return float(((a[..., 2] > 150) & (a[..., 0] < 90) & (a[..., 1] < 120)).mean())


def _video_layout():
    from label_studio_sdk.label_interface import LabelInterface

    from pipeline.labelstudio import Layout
    from pipeline.labelstudio.labeling_config import video_config
    return Layout.from_config(LabelInterface(config=video_config(parse_project(CFG))))
