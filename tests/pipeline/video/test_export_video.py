"""export on a video project: every Nth frame of each reviewed video with the boxes its tracks have there
(interpolated as the video editor shows them), YOLO or COCO, split by task, a broken video failing its
task only."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipeline.distill.video_export import export_video_tasks
from pipeline.labelstudio.labeling_config import video_config
from tests.pipeline.video.test_run import CFG, parse_project

REGION = {"id": "a", "from_name": "box", "to_name": "video", "type": "videorectangle",
          "value": {"framesCount": 120, "duration": 4.0, "labels": ["ball"], "sequence": [
              {"frame": 1, "enabled": True, "x": 0, "y": 0, "width": 25, "height": 25, "rotation": 0},
              {"frame": 41, "enabled": False, "x": 50, "y": 0, "width": 25, "height": 25, "rotation": 0}]}}


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_frames_with_their_interpolated_boxes(tmp_path, moving, fmt):
    _, path = moving
    tasks = [{"id": 1, "data": {"video": "v1"}, "annotations": [{"id": 9, "result": [REGION]}]},
             {"id": 2, "data": {"video": "broken"}, "annotations": [{"id": 10, "result": []}]},
             {"id": 3, "data": {"video": "v3"}, "annotations": []}]

    def to_file(url, task_id, dest):
        if url == "broken":
            dest.write_bytes(b"not a video")
        else:
            shutil.copy(path, dest)
    m = export_video_tasks(tasks, video_config(parse_project(CFG)), tmp_path / "out", fmt, to_file, stride=20)
    files = {f["frame"]: f for f in m["files"]}
    assert sorted(files) == [0, 20, 40, 60, 80, 100] and {f["task_id"] for f in m["files"]} == {1}
    assert [files[f]["boxes"] for f in sorted(files)] == [1, 1, 1, 0, 0, 0]  # the track ends at frame 40
    assert [f["task"] for f in m["left_out"]["video_failed"]] == [2]
    split = files[20]["split"]
    if fmt == "yolo":
        line = (tmp_path / "out" / files[20]["labels"]).read_text().split()
        # frame 20 is halfway: x from 0% to 50% -> 25%; 25% wide -> centre 37.5%
        assert line[0] == "0" and np.allclose([float(v) for v in line[1:]], [0.375, 0.125, 0.25, 0.25], atol=1e-3)
        assert (tmp_path / "out" / files[60]["labels"]).read_text() == ""
    else:
        coco = json.loads((tmp_path / "out" / "annotations" / f"instances_{split}.json").read_text())
        assert len(coco["images"]) == 6 and len(coco["annotations"]) == 3
    assert (tmp_path / "out" / files[0]["file"]).stat().st_size > 1000
