"""evaluate on a video project: each model_version's latest prediction against the reviewed annotation,
both interpolated as Label Studio's video editor shows them, scored with MOTA, IDF1 and HOTA."""
from __future__ import annotations

from pipeline.evaluate.video import evaluate_video_tasks, video_control
from pipeline.labelstudio.labeling_config import video_config
from tests.pipeline.video.test_run import CFG, parse_project


def _region(rid, label, keys, frames=40):
    seq = [{"frame": f + 1, "enabled": en, "x": x, "y": 10, "width": 10, "height": 10, "rotation": 0}
           for f, x, en in keys]
    return {"id": rid, "from_name": "box", "to_name": "video", "type": "videorectangle",
            "value": {"framesCount": frames, "duration": frames / 30, "sequence": seq, "labels": [label]}}


TRUTH = [_region("a", "ball", [(0, 0, True), (39, 39, False)]), _region("b", "ball", [(0, 60, True), (39, 21, False)])]


def test_a_prediction_that_swaps_two_tracks_halfway_scores_lower_than_one_that_follows_them():
    same = [_region("p", "ball", [(0, 0, True), (39, 39, False)]),
            _region("q", "ball", [(0, 60, True), (39, 21, False)])]
    # the two paths cross at frame 30; this prediction hands each track over to the other object there
    swapped = [_region("p", "ball", [(0, 0, True), (30, 30, True), (39, 21, False)]),
               _region("q", "ball", [(0, 60, True), (30, 30, True), (39, 39, False)])]
    task = {"id": 1, "annotations": [{"id": 5, "result": TRUTH, "updated_at": "2026-01-01"}],
            "predictions": [{"model_version": "good", "result": same}, {"model_version": "swaps", "result": swapped}]}
    unreviewed = {"id": 2, "annotations": [], "predictions": [{"model_version": "good", "result": same}]}
    report = evaluate_video_tasks([task, unreviewed], "box")
    good, swaps = report["versions"]["good"], report["versions"]["swaps"]
    assert report["tasks"] == 1 and good["tasks"] == 1 and good["frames"] == 40
    assert (good["MOTA"], good["IDF1"], good["IDSW"]) == (1.0, 1.0, 0)
    assert swaps["IDSW"] >= 1 and swaps["IDF1"] < 0.9 and swaps["HOTA"] < good["HOTA"]
    assert evaluate_video_tasks([task], "box", versions=["swaps"])["versions"].keys() == {"swaps"}


def test_two_tasks_are_scored_as_one_sequence_without_mixing_their_tracks():
    task = lambda i: {"id": i, "annotations": [{"id": i, "result": TRUTH}],  # noqa: E731
                      "predictions": [{"model_version": "v", "result": TRUTH}]}
    report = evaluate_video_tasks([task(1), task(2)], "box")
    v = report["versions"]["v"]
    assert v["frames"] == 80 and v["true_tracks"] == 4 and v["IDSW"] == 0 and v["MOTA"] == 1.0


def test_video_control_names_the_video_rectangle():
    assert video_control(video_config(parse_project(CFG))) == "box"
    assert video_control('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i">'
                         '<Label value="a"/></RectangleLabels></View>') is None
