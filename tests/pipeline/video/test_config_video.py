"""`label-factory config --video` prints a config the output layer reads as a video layout, and the video
settings leave image projects' model_version as it was."""
from __future__ import annotations

import yaml
from label_studio_sdk.label_interface import LabelInterface

from pipeline.cli import main
from pipeline.config import parse_project
from pipeline.labelstudio import Layout, UnsupportedConfig

DATA = {"project_name": "v", "target_object": "ball", "queries": {"ball": ["red ball"], "crate": ["crate"]}}


def test_config_video_is_a_video_layout_with_the_project_labels(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(DATA))
    assert main(["config", "--project", str(p), "--video"]) == 0
    layout = Layout.from_config(LabelInterface(config=capsys.readouterr().out))
    assert layout.media == "video" and layout.data_key == "video"
    (out,) = layout.outputs
    assert out.name == "box" and out.labels == ["ball", "crate"] and out.label_for("red ball") == "ball"


def test_a_video_without_a_video_rectangle_is_refused_with_what_is_filled():
    li = LabelInterface(config='<View><Video name="v" value="$v"/><Labels name="l" toName="v">'
                               '<Label value="a"/></Labels></View>')
    try:
        Layout.from_config(li)
    except UnsupportedConfig as e:
        assert "VideoRectangle" in str(e)
    else:
        raise AssertionError("a video config with no VideoRectangle was accepted")


def test_default_video_settings_keep_the_fingerprint_and_changed_ones_change_it():
    base = parse_project(DATA).fingerprint()
    assert parse_project({**DATA, "video": {"keyframe_every": 30}}).fingerprint() == base
    assert parse_project({**DATA, "video": {"keyframe_every": 10}}).fingerprint() != base
