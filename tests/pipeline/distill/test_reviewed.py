from pipeline.distill.reviewed import examples
from pipeline.labelstudio.truth import layout_of, reviewed_annotation

LAYOUT = layout_of('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                   '<Label value="A"/><Label value="B"/><Label value="C"/><Label value="D"/></RectangleLabels>'
                   '<RectangleLabels name="other" toName="image" model_skip="true"><Label value="X"/>'
                   '</RectangleLabels></View>')


def rect(label, x=10, y=20, w=30, h=40, score=None, rotation=0, from_name="label"):
    r = {"from_name": from_name, "to_name": "image", "type": "rectanglelabels", "original_width": 200,
         "original_height": 100, "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation,
                                           "rectanglelabels": [label]}}
    if score is not None:
        r["score"] = score
    return r


def task(tid, annotations=(), predictions=()):
    return {"id": tid, "data": {"image": f"/data/upload/1/{tid}.jpg"}, "annotations": list(annotations),
            "predictions": list(predictions)}


def ann(aid, result, updated, cancelled=False):
    return {"id": aid, "result": result, "updated_at": updated, "created_at": "2026-01-01T00:00:00Z",
            "was_cancelled": cancelled}


def test_latest_submitted_annotation_wins_and_cancelled_ones_never_count():
    t = task(1, [ann(10, [rect("A")], "2026-01-02T00:00:00Z"), ann(11, [rect("B")], "2026-01-03T00:00:00Z"),
                 ann(12, [rect("C")], "2026-01-04T00:00:00Z", cancelled=True)])
    assert reviewed_annotation(t)["id"] == 11
    (ex,), tally = examples([t], LAYOUT)
    assert (ex.source, ex.source_id, [r["value"]["rectanglelabels"] for r in ex.results]) == ("annotation", 11, [["B"]])
    assert not ex.pseudo


def test_what_each_kind_of_task_contributes():
    tasks = [
        task(1, [ann(10, [], "2026-01-02T00:00:00Z")]),  # reviewed negative: an image with no boxes
        task(2, [ann(20, [rect("A")], "2026-01-02T00:00:00Z", cancelled=True)],  # skipped by a person
             [{"id": 200, "model_version": "v1", "result": [rect("A", score=0.99)]}]),
        task(3, predictions=[{"id": 300, "model_version": "v1", "score": 0.9,
                              "result": [rect("A", score=0.8), rect("B", score=0.3), rect("C")]},
                             {"id": 301, "model_version": "v0", "result": [rect("D", score=0.99)]}]),
        task(4, predictions=[{"id": 400, "model_version": "v1", "result": [rect("A", score=0.1)]}]),
        task(5),  # nothing
        task(6, [ann(60, [rect("A", rotation=30), rect("B"), rect("X", from_name="other")],
                     "2026-01-02T00:00:00Z")]),
    ]
    exs, tally = examples(tasks, LAYOUT)  # no pseudo-labels asked for
    assert [(e.task_id, e.source) for e in exs] == [(1, "annotation"), (6, "annotation")]
    # a rotated rectangle is a region like any other; "other" is no output (model_skip)
    assert exs[0].results == [] and [r["value"]["rectanglelabels"] for r in exs[1].results] == [["A"], ["B"]]
    assert (tally.tasks, tally.only_cancelled, tally.no_labels) == (6, 1, 3)

    exs, tally = examples(tasks, LAYOUT, pseudo_version="v1", pseudo_threshold=0.5)
    by_task = {e.task_id: e for e in exs}
    assert sorted(by_task) == [1, 3, 6]  # 2 was skipped by a person, 4 has no box >= 0.5
    pseudo = by_task[3]
    assert pseudo.pseudo and pseudo.source_id == 300 and pseudo.model_version == "v1"
    # C has no score of its own: it takes the prediction's 0.9
    assert [(r["value"]["rectanglelabels"], r["score"]) for r in pseudo.results] == [(["A"], 0.8), (["C"], 0.9)]
    assert tally.low_score == 2

