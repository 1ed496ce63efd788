"""Seconds per minute of 1080p/30 fps video: keyframes + tracking + verify per track (pipeline/video/run.py)
against the image cascade on every frame, with the tracking quality of both, and the peak memory of one
video task on a 10-minute 1080p file.

How (one run, side by side):

1. A generated 1080p/30 fps video (pipeline/video/synthetic.py: movers on known trajectories, an occluder,
   a cut every 15 s) is labelled three ways with the generated world's own detector (ColourGrounder) and a
   scripted verify: keyframes only (every 30 frames + cuts), keyframes + between-detections every 5 frames,
   and the cascade on every frame. Each run counts its model calls (ground on keyframes, between-detections,
   verify crops) and times everything else (decoding, scene cuts, tracking); its tracks, interpolated as
   Label Studio's video editor shows them, are scored against the true trajectories (MOTA, IDF1, HOTA).
2. In the same process the real-shape models (random weights: only their speed means something) give the
   unit costs: OWLv2 (google/owlv2-base-patch16-ensemble's shape) grounding one 1080p frame at the default
   ground budget, and Qwen2.5-VL-3B (published shape) verifying one crop at the default verify budget.
3. Seconds per minute of video = calls x unit cost + the measured rest. The every-frame cascade here runs
   ground + verify (no filter, which would add a whole-image VLM call per frame): the ratio is conservative.
4. Peak RSS of one video task (decode, scene cuts, keyframes, tracking, per-track crops) on a 10-minute and
   a 1-minute 1080p file (the 10-minute one is the 1-minute stream ten times over, packets copied), each in
   its own process, with the world's detector (the models' own memory is
   the image cascade's, the same for a photo).

    python benchmarks/video_tracks.py [--seconds 60] [--rss-minutes 10] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import CACHE, log, machine, median, table  # noqa: E402  (sets sys.path)

from pipeline.cascade import Pipeline  # noqa: E402
from pipeline.config import VideoSettings, parse_project  # noqa: E402
from pipeline.labelstudio.tracks import per_frame, read_tracks  # noqa: E402
from pipeline.providers.base import VLM, YesNo  # noqa: E402
from pipeline.video import synthetic  # noqa: E402
from pipeline.video.quality import tracking_quality  # noqa: E402
from pipeline.video.run import VideoCascade, every_frame  # noqa: E402

CFG = {"project_name": "bench-video", "target_object": "ball", "queries": {"ball": ["ball"], "crate": ["crate"]},
       "stages": {"filter": False}}


class CountingVLM(VLM):
    """Says yes (0.9) and counts the crops it was asked about."""
    name = "counting-vlm"

    def __init__(self):
        self.crops = 0

    def yes_probability(self, image, question):
        self.crops += 1
        return YesNo(0.9, "scripted")


def make_video(seconds: float, path: Path, width=1920, height=1080) -> synthetic.World:
    w = synthetic.world(width, height, 30.0, seconds, seed=7, scenes=max(1, int(seconds // 15)), objects=4,
                        speed=0.004)
    if not path.exists():
        log(f"encoding {seconds:g} s of {width}x{height} to {path} ...")
        tmp = path.with_suffix(".part.mp4")
        synthetic.write(w, tmp)
        tmp.rename(path)
    return w


def looped(source: Path, times: int, path: Path) -> Path:
    """``source`` ``times`` over in one file, its packets copied (no re-encoding): a long real 1080p stream."""
    import av
    if path.exists():
        return path
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(source)) as src, av.open(str(tmp), "w") as out:
        s_in = src.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        packets = [p for p in src.demux(s_in) if p.dts is not None]
        stamps = [(p.pts, p.dts) for p in packets]
        tick = round(1 / (float(s_in.average_rate) * s_in.time_base))
        span = max(pts for pts, _ in stamps) - min(pts for pts, _ in stamps) + tick
        for k in range(times):
            for p, (pts, dts) in zip(packets, stamps):
                p.pts, p.dts, p.stream = pts + k * span, dts + k * span, s_out
                out.mux(p)
    tmp.rename(path)
    return path


def label_three_ways(path: Path, w: synthetic.World) -> dict:
    from label_studio_sdk.label_interface import LabelInterface

    from pipeline.labelstudio import Layout
    from pipeline.labelstudio.labeling_config import video_config
    from pipeline.labelstudio.tracks import video_prediction
    cfg = parse_project(CFG)
    layout = Layout.from_config(LabelInterface(config=video_config(cfg)))
    gt = w.tracks()
    out = {}
    for name, settings in (("keyframes only (every 30 + cuts)", VideoSettings(detect_every=0)),
                           ("keyframes + between every 5", VideoSettings(detect_every=5))):
        vlm = CountingVLM()
        os.environ["LF_ANSWER_CACHE"] = "0"
        res = VideoCascade(Pipeline(cfg, vlm=vlm, grounder=synthetic.ColourGrounder()), settings).run(path)
        i = res.info
        pred, _ = video_prediction(layout, res.boxes, i.width, i.height, i.fps, i.frames, i.duration, res.max_gap,
                                   "bench")
        shown = per_frame(read_tracks(pred["result"], i.width, i.height), i.frames)
        rest = res.seconds - res.timings.get("ground", 0) - res.timings.get("between", 0) - res.timings.get("verify", 0)
        out[name] = {"ground": res.counts["keyframes"], "between": res.counts["between"], "verify": vlm.crops,
                     "rest_s": rest, "quality": tracking_quality(gt, shown, i.frames),
                     "keyframes_written": sum(len(r["value"]["sequence"]) for r in pred["result"])}
        log(f"{name}: {out[name]['ground']} ground, {out[name]['between']} between, {vlm.crops} verify crops, "
            f"{rest:.1f} s rest")
    vlm = CountingVLM()
    res = every_frame(Pipeline(cfg, vlm=vlm, grounder=synthetic.ColourGrounder()), path)
    rest = res.seconds - res.timings.get("ground", 0) - res.timings.get("verify", 0)
    out["cascade on every frame"] = {"ground": res.counts["frames"], "between": 0, "verify": vlm.crops, "rest_s": rest,
                                     "quality": tracking_quality(gt, res.boxes.active(), res.info.frames)}
    log(f"every frame: {res.counts['frames']} ground, {vlm.crops} verify crops, {rest:.1f} s rest")
    return out


def unit_costs(quick: bool, repeats: int = 1) -> dict:
    """Seconds per ground call on a 1080p frame (OWLv2-base shape) and per verify crop (Qwen2.5-VL-3B shape)."""
    from benchmarks import _qwen
    from benchmarks.predict_overhead import owlv2_dir
    from pipeline.images import Photo
    from pipeline.stages import ground
    w = synthetic.world(1920, 1080, 30.0, 1.0, seed=1, scenes=1, objects=4)
    from PIL import Image
    photo = Photo.of(Image.fromarray(w.frame(0)))
    owl = owlv2_dir("tiny" if quick else "base")
    qwen = _qwen.ensure("tiny" if quick else "3b", 12845056)
    cfg = parse_project({**CFG, "providers": {
        "vlm": {"kind": "transformers", "model": str(qwen), "device": "cpu", "max_batch": 4},
        "grounder": {"kind": "owlv2", "model": str(owl), "device": "cpu"}}})
    os.environ["LF_ANSWER_CACHE"] = "0"
    pipe = Pipeline(cfg).load()
    times = []
    for _ in range(repeats + 1):  # the first call loads and warms up
        t0 = time.perf_counter()
        ground(pipe.grounder, photo, cfg.query_labels(), cfg.thresholds, max_pixels=cfg.budgets.ground_pixels)
        times.append(time.perf_counter() - t0)
    g = median(times[1:])
    log(f"ground: {times}")
    from pipeline.crops import crop
    crops = [crop(photo, b, cfg.thresholds.crop_padding, cfg.budgets.verify_pixels) for b in w.truth(0).xyxy[:2]]
    pipe.vlm.yes_probabilities(crops[:1], "Is this a ball? Answer YES or NO.")  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipe.vlm.yes_probabilities(crops, "Is this a ball? Answer YES or NO.")
        times.append((time.perf_counter() - t0) / len(crops))
    log(f"verify per crop: {times}")
    student = student_cost(photo.pixels)
    return {"ground_s": g, "verify_s": median(times), "student_s": student, "owlv2": "tiny test shape" if quick else
            "google/owlv2-base-patch16-ensemble shape", "vlm": _qwen.ARCH_NAMES["tiny" if quick else "3b"]}


def student_cost(image) -> float:
    """Seconds per frame of the student's architecture (ultralytics yolo11n.yaml, random initial weights,
    640 px), what ``video.between: {kind: student}`` runs between keyframes."""
    import tempfile
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.mkdtemp(prefix="lf-bench-yolo-")) / "cfg"))
    from ultralytics import YOLO
    model = YOLO("yolo11n.yaml")
    model.predict(image, imgsz=640, device="cpu", verbose=False)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        model.predict(image, imgsz=640, device="cpu", verbose=False)
        times.append(time.perf_counter() - t0)
    return median(times)


def rss_child(path: str) -> None:
    """(child) one video task on ``path``; prints its peak RSS and what it did as JSON."""
    cfg = parse_project(CFG)
    os.environ["LF_ANSWER_CACHE"] = "0"
    pipe = Pipeline(cfg, vlm=CountingVLM(), grounder=synthetic.ColourGrounder())
    import trackers  # noqa: F401 - everything imported before the baseline is taken
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    t0 = time.perf_counter()
    res = VideoCascade(pipe).run(path)
    print(json.dumps({"peak_rss_mib": _status("VmHWM"), "imports_rss_mib": before,
                      "frames": res.info.frames, "tracks": len(res.kept_tracks()), "boxes": len(res.boxes),
                      "seconds": time.perf_counter() - t0}))


def _status(key: str) -> float:
    """A /proc/self/status memory figure in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss(path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(path)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the compared video (default 60)")
    ap.add_argument("--rss-minutes", type=float, default=10.0, help="length of the memory test video (default 10)")
    ap.add_argument("--quick", action="store_true", help="tiny models, 10 s, 1-minute memory file (a smoke run)")
    ap.add_argument("--rss-only", action="store_true", help="only the memory table")
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per unit cost, after a warm-up (default 1)")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rss_child:
        rss_child(a.rss_child)
        return 0
    if a.quick:
        a.seconds, a.rss_minutes = 10.0, 1.0
    folder = CACHE / "video"
    folder.mkdir(parents=True, exist_ok=True)
    log(f"machine: {machine()}")
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | head -1"], capture_output=True, text=True).stdout
    if not a.rss_only:
        compare(a, folder, cpu)
    memory(a, folder)
    return 0


def compare(a, folder: Path, cpu: str) -> None:
    w = make_video(a.seconds, folder / f"compare-{a.seconds:g}s-1080p.mp4")
    runs = label_three_ways(folder / f"compare-{a.seconds:g}s-1080p.mp4", w)
    log("runs: " + json.dumps({k: {**v, "quality": {q: v["quality"][q] for q in ("MOTA", "IDF1", "HOTA", "IDSW")}}
                                for k, v in runs.items()}))
    units = unit_costs(a.quick, a.repeats)
    per_minute = 60.0 / a.seconds
    rows, secs = [], {}
    between = dict(runs["keyframes + between every 5"])
    runs = {**runs, "keyframes + student between every 5": {**between, "student": between["between"], "between": 0}}
    for name, r in runs.items():
        s = (r["ground"] * units["ground_s"] + r["between"] * units["ground_s"] + r["verify"] * units["verify_s"]
             + r.get("student", 0) * units["student_s"] + r["rest_s"]) * per_minute
        secs[name] = s
    base = secs["cascade on every frame"]
    for name, r in runs.items():
        q = r["quality"]
        rows.append([name, f"{r['ground'] * per_minute:,.0f}",
                     f"{(r['between'] + r.get('student', 0)) * per_minute:,.0f}",
                     f"{r['verify'] * per_minute:,.0f}", f"{secs[name]:,.0f}", f"{base / secs[name]:.1f}x",
                     f"{q['MOTA']:.3f}", f"{q['IDF1']:.3f}", f"{q['HOTA']:.3f}", q["IDSW"]])
    print(f"\n## Seconds per minute of 1080p/30 fps video (CPU: {cpu.split(':', 1)[-1].strip()}, "
          f"{os.cpu_count()} cores)")
    print(f"unit costs, measured here: ground one 1080p frame ({units['owlv2']}, 1 MP budget) "
          f"{units['ground_s']:.2f} s; verify one crop ({units['vlm']}, 200,704 px budget) {units['verify_s']:.2f} s; "
          f"a student frame (yolo11n shape, 640 px) {units['student_s']:.3f} s; between-detections by the grounder "
          "priced as ground calls; the student row is the same run with its between-detections priced as student "
          "frames (same boxes: its quality is the grounder's, an upper bound for a student)")
    print(table(["how", "ground calls/min", "between/min", "verify crops/min", "s per minute", "cheaper",
                 "MOTA", "IDF1", "HOTA", "ID switches"], rows))
    print("(quality: the generated video's true trajectories vs the tracks as Label Studio's editor interpolates "
          "them, boxes from the generated world's own detector; speed: calls x real-shape unit costs + measured "
          "decoding, scene cuts and tracking)")


def memory(a, folder: Path) -> None:
    mem = []
    for minutes in sorted({1.0, a.rss_minutes}):
        one = folder / "rss-1min-1080p.mp4"
        make_video(60, one)
        p = one if minutes == 1 else looped(one, int(round(minutes)), folder / f"rss-{minutes:g}min-1080p.mp4")
        r = peak_rss(p)
        mem.append([f"{minutes:g} min", f"{r['frames']:,}", r["tracks"], f"{r['boxes']:,}", f"{r['seconds']:.0f}",
                    f"{r['imports_rss_mib']:.0f}", f"{r['peak_rss_mib']:.0f}",
                    f"{r['peak_rss_mib'] - r['imports_rss_mib']:.0f}"])
        log(f"{minutes:g} min: {r}")
    print("\n## Peak RSS of one video task (1080p/30 fps, keyframes + between every 5, the world's detector)")
    print(table(["video", "frames", "tracks", "boxes seen", "seconds", "RSS before the video MiB", "peak RSS MiB",
                 "the video task's own MiB"], mem))


if __name__ == "__main__":
    sys.exit(main())
