"""Bounded decoding: every limit refuses or stops with a reason that names it, frames come at the working
resolution with the original's size, and broken files fail with the reason."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import deadline
from pipeline.video import synthetic
from pipeline.video.decode import Video, VideoLimits, VideoLoadError, probe, reduction


def test_probe_reads_size_rate_and_length(moving):
    w, path = moving
    info = probe(path)
    assert (info.width, info.height, info.frames) == (320, 240, w.frames)
    assert info.fps == pytest.approx(30.0) and info.duration == pytest.approx(4.0, abs=0.05)


def test_frames_in_order_with_times_and_pixels_at_the_working_resolution(moving):
    w, path = moving
    with Video(path, VideoLimits(frame_pixels=160 * 120)) as v:
        assert v.scale == 2
        seen = []
        for f in v.frames(small_side=64):
            seen.append(f.index)
            if f.index == 30:
                photo = f.photo()
                assert photo.size == (320, 240) and photo.pixels.size == (160, 120) and photo.scale == 2
                assert f.small.shape == (48, 64, 3)
                # the decoded frame is the drawn one (lossy codec: close, not equal)
                drawn = np.asarray(w.frame(30), float)[::2, ::2]
                assert np.abs(np.asarray(photo.pixels, float) - drawn).mean() < 12
                assert f.time == pytest.approx(1.0)
    assert seen == list(range(w.frames))


def test_reduction_is_the_least_whole_factor():
    assert reduction(1920, 1080, 1920 * 1080) == 1
    assert reduction(1920, 1080, 1_000_000) == 2
    assert reduction(3840, 2160, 1_000_000) == 3


@pytest.mark.parametrize("limits, says", [
    (VideoLimits(max_bytes=1000), "VIDEO_MAX_BYTES"),
    (VideoLimits(max_pixels=320 * 239), "VIDEO_MAX_PIXELS"),
    (VideoLimits(max_frames=100), "VIDEO_MAX_FRAMES"),
])
def test_a_video_over_a_limit_is_refused_before_decoding(moving, limits, says):
    with pytest.raises(VideoLoadError, match=says):
        Video(moving[1], limits)


def test_the_decoding_deadline_stops_with_the_frame_it_reached(moving):
    with Video(moving[1], VideoLimits(seconds=0.0)) as v:
        with pytest.raises(VideoLoadError, match=r"VIDEO_SECONDS=0 s \(stopped at frame"):
            list(v.frames())


def test_the_request_deadline_stops_decoding(moving):
    with deadline.within(0.0, "PREDICT_DEADLINE"):
        with Video(moving[1]) as v:
            with pytest.raises(deadline.DeadlineExceeded, match="ran out at frame 0"):
                list(v.frames())


def test_a_header_that_understates_the_length_is_stopped_at_the_budget(tmp_path, monkeypatch):
    w = synthetic.world(seconds=1, scenes=1)
    path = synthetic.write(w, tmp_path / "v.mp4")
    v = Video(path, VideoLimits(max_frames=40))
    object.__setattr__(v, "limits", VideoLimits(max_frames=20))  # as if the header had said 20 or fewer
    with v, pytest.raises(VideoLoadError, match="more than 20 frames"):
        list(v.frames())


@pytest.mark.parametrize("content, says", [
    (b"", "empty file"),
    (b"this is not a video at all" * 100, "not a video"),
])
def test_files_that_are_not_videos(tmp_path, content, says):
    p = tmp_path / "x.mp4"
    p.write_bytes(content)
    with pytest.raises(VideoLoadError, match=says):
        probe(p)


def test_a_file_without_a_video_stream(tmp_path):
    import av
    p = tmp_path / "sound.wav"
    with av.open(str(p), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in s.encode(frame):
            out.mux(packet)
    with pytest.raises(VideoLoadError, match="no video stream"):
        probe(p)


def test_a_truncated_video_fails_with_the_reason_or_ends_early(tmp_path, moving):
    data = moving[1].read_bytes()
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: len(data) // 3])  # mp4 keeps its index at the end: the container cannot be read
    with pytest.raises(VideoLoadError, match="cut.mp4"):
        with Video(p) as v:
            list(v.frames())


def test_the_limits_are_the_video_settings(monkeypatch):
    monkeypatch.setenv("VIDEO_MAX_BYTES", "1000")
    monkeypatch.setenv("VIDEO_SECONDS", "0")  # no limit of its own: the request's deadline still applies
    limits = VideoLimits.from_env(max_frames=5, frame_pixels=None)
    assert (limits.max_bytes, limits.seconds, limits.max_frames) == (1000, None, 5)
    assert (limits.max_pixels, limits.frame_pixels) == (VideoLimits().max_pixels, 1920 * 1080)
    monkeypatch.setenv("VIDEO_MAX_PIXELS", "4K")
    with pytest.raises(VideoLoadError, match="VIDEO_MAX_PIXELS='4K'"):
        VideoLimits.from_env()
