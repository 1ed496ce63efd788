"""Frames of videos into an image project: scene-aware picks with a stride and a cap, near-identical frames
dropped like the importer drops photos, provenance in each entry's task data, broken videos rejected with
the reason while the others go on."""
from __future__ import annotations

import http.server
import threading
from functools import partial

import pytest

from pipeline.config import parse_project
from pipeline.importer.manifest import Manifest
from pipeline.importer.runner import ImportOptions, run_import
from pipeline.video import synthetic
from pipeline.video.sampling import sample


def test_every_scene_starts_a_pick_and_the_stride_runs_from_there(moving):
    w, path = moving
    info, picks = sample(path, stride=25, per_video=50)
    got = [(p.index, p.why) for p in picks]
    assert got == [(0, "scene"), (25, "stride"), (50, "stride"), (60, "scene"), (85, "stride"), (110, "stride")]
    assert info.frames == w.frames


def test_the_cap_widens_the_stride_and_stops_at_the_cap(moving):
    _, path = moving
    _, picks = sample(path, stride=1, per_video=4)
    got = [p.index for p in picks]
    assert len(got) == 4 and got[:2] == [0, 30]  # stride widened to 120 / 4 = 30


def _options(tmp_path, videos, **kw):
    return ImportOptions(videos=[str(v) for v in videos], data_root=str(tmp_path / "data"), progress=False,
                         frame_stride=kw.pop("stride", 20), frames_per_video=kw.pop("cap", 50), **kw)


CFG = parse_project({"project_name": "frames", "target_object": "ball"})


def test_import_videos_keeps_provenance_drops_near_duplicates_and_rejects_broken_ones(tmp_path, moving):
    folder = tmp_path / "videos"
    folder.mkdir()
    w, path = moving
    (folder / "moving.mp4").write_bytes(path.read_bytes())
    still = synthetic.world(seconds=2, scenes=1, objects=0, occluder=False, seed=5)  # nothing moves
    synthetic.write(still, folder / "still.mp4")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    s = run_import(CFG, _options(tmp_path, [folder]))
    entries = list(Manifest.load(tmp_path / "data"))
    by_video = {}
    for e in entries:
        by_video.setdefault(e["data"]["video"].rsplit("/", 1)[-1], []).append(e["data"])
    assert [d["frame"] for d in by_video["still.mp4"]] == [0]  # its other picks are pHash duplicates of frame 0
    assert [d["frame"] for d in sorted(by_video["moving.mp4"], key=lambda d: d["frame"])] == [0, 20, 40, 60, 80, 100]
    assert all(d["time"] == pytest.approx(d["frame"] / 30, abs=1e-3) for d in by_video["moving.mp4"])
    assert s.duplicates["perceptual (pHash)"] >= 2 and s.rejected == {"video: VideoLoadError": 1}
    assert any("broken.mp4" in x for x in s.warnings)
    for e in entries:
        assert (tmp_path / "data" / e["path"]).stat().st_size == e["bytes"]
    again = run_import(CFG, _options(tmp_path, [folder]))
    assert again.downloaded == 0 and again.n_duplicates == s.downloaded + s.n_duplicates


def test_a_video_url_is_fetched_and_sampled(tmp_path, moving):
    _, path = moving
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{path.name}"
        s = run_import(CFG, _options(tmp_path, [url], stride=60, per_host_interval=0))
        missing = run_import(CFG, _options(tmp_path, [url + ".gone"], per_host_interval=0))
    finally:
        server.shutdown()
    assert s.downloaded == 2 and not s.rejected
    assert missing.rejected == {"video: VideoLoadError": 1} and "HTTP 404" in missing.warnings[0]
