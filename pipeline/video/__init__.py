"""Video: bounded decoding (PyAV), scene cuts (PySceneDetect), frame sampling for image projects, and
tracks for Label Studio's video editor (keyframes grounded, boxes associated by ByteTrack from the
``trackers`` package, verify and identify once per track).

* ``decode``: a video file -> frames at a working resolution, within ``VideoLimits`` (frames, pixels,
  bytes, seconds); a corrupt or unsupported stream raises ``VideoLoadError`` with the reason;
* ``scenes``: scene cuts from small frames (PySceneDetect's ``ContentDetector``);
* ``sampling``: scene-aware frames with a stride and a cap, near-duplicates dropped (imagehash);
* ``tracking``: per-frame ``Detections`` -> the same boxes with a track id each (ByteTrack);
* ``tracks``: a track's boxes -> Label Studio keyframes (interpolation fills the rest) and back;
* ``run``: the video cascade (keyframes + tracking + verify/identify per track) and, beside it, the
  cascade on every frame it is measured against;
* ``synthetic``: generated scenes in motion with known trajectories, occlusions and cuts, and the
  detector of that world (for tests and benchmarks).
"""
