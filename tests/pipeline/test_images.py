import json

import pytest
from PIL import Image

from pipeline.cascade import Pipeline
from pipeline.config import parse_project
from pipeline.images import ImageLoadError, open_image
from pipeline.predict.folder import list_images, run_folder, write_outputs
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(3):
        Image.new("RGB", (64 + i, 48), (200, 30, 30)).save(d / f"good{i}.jpg")
    good = (d / "good0.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    Image.new("1", (12000, 12000)).save(d / "bomb.png")  # 144 MP in a few kB
    (d / "readme.txt").write_text("ignored: not an image suffix")
    return d


@pytest.mark.parametrize("name, words", [("truncated.jpg", "truncated"), ("corrupt.png", "corrupt"),
                                         ("empty.jpg", "0 bytes"), ("notes.jpg", "not an image"),
                                         ("bomb.png", "decompression bomb")])
def test_open_image_reasons(folder, name, words):
    with pytest.raises(ImageLoadError) as e:
        open_image(folder / name)
    assert name in str(e.value) and words in str(e.value)


def test_bomb_limit_is_configurable(folder):
    assert open_image(folder / "good0.jpg", max_pixels=64 * 48).size == (64, 48)
    with pytest.raises(ImageLoadError, match="exceeds the limit"):
        open_image(folder / "good1.jpg", max_pixels=64 * 48)


def test_bad_images_are_skipped_with_reasons_and_the_rest_labeled(folder, tmp_path):
    cfg = parse_project({"project_name": "t", "target_object": "thing",
                         "providers": {"vlm": {"kind": "transformers", "model": "x"}}})
    pipe = Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 0.9),
                    grounder=ScriptedGrounder([([5, 5, 30, 30], 0.8, "thing")]))
    images = list_images(folder)
    assert len(images) == 8 and not any(p.suffix == ".txt" for p in images)
    out = run_folder(cfg, images, pipe, folder.parent, "t-v1", progress=False)
    paths = write_outputs(out, tmp_path / "out")
    record = json.loads(paths["record"].read_text())
    skipped = {r["file"].rsplit("/", 1)[1]: r["reason"] for r in record["skipped"]}
    assert set(skipped) == {"truncated.jpg", "corrupt.png", "empty.jpg", "notes.jpg", "bomb.png"}
    assert record["counts"] == {"images": 8, "labeled": 3, "skipped": 5, "boxes": 3}
    tasks = json.loads(paths["tasks"].read_text())
    assert [t["data"]["image"] for t in tasks] == [f"/data/local-files/?d=images/good{i}.jpg" for i in range(3)]
    assert all(t["predictions"][0]["model_version"] == "t-v1" for t in tasks)
    coco = json.loads(paths["coco"].read_text())
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == 3


def test_model_error_fails_that_image_only(folder, tmp_path):
    cfg = parse_project({"project_name": "t", "target_object": "thing",
                         "providers": {"vlm": {"kind": "transformers", "model": "x"}}})

    def flaky(im, q):
        if im.width == 65:
            raise RuntimeError("server exploded")
        return 0.9

    pipe = Pipeline(cfg, vlm=ScriptedVLM(flaky), grounder=ScriptedGrounder([]))
    images = [folder / f"good{i}.jpg" for i in range(3)]
    out = run_folder(cfg, images, pipe, folder, "v", progress=False)
    assert out.record["counts"]["labeled"] == 2
    assert "good1.jpg: model error: RuntimeError: server exploded" in out.record["skipped"][0]["reason"]


def test_document_root_outside_the_images_is_refused_before_models_load(folder, tmp_path, capsys):
    from pipeline import cli
    project = tmp_path / "p.yaml"
    project.write_text("project_name: t\ntarget_object: thing\n"
                       "providers: {vlm: {kind: transformers, model: /nonexistent}}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rc = cli.main(["run", "--project", str(project), "--images", str(folder), "--out", str(tmp_path / "o"),
                   "--document-root", str(elsewhere), "--quiet"])
    assert rc == 2 and not (tmp_path / "o").exists()
