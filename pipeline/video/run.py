"""The video cascade: a video file -> tracks, each a label, a score and boxes on the frames it was seen.

``VideoCascade.run``, frame by frame in one decoding pass (``pipeline.video.decode``):

1. scene cuts from thumbnails (``scenes.CutFinder``); a cut ends every track;
2. keyframes (each cut, and every ``video.keyframe_every`` frames) go to the project's grounder
   (``stages.ground``: its queries, thresholds, NMS and pixel budget); between them, every
   ``video.detect_every`` frames, ``video.between`` (e.g. the distilled student; default the grounder)
   gives boxes, as long as a deadline in force leaves time for them;
3. ByteTrack ties the boxes into tracks (``tracking.Tracker``), across the gaps between detection frames;
4. each track keeps its best crops (highest score x size, padded like verify's), and when it ends, verify
   asks about them once (one batched call per question for the tracks ending together) and identify names
   it once. A track below its label's verify threshold, or seen on fewer than ``video.min_track_boxes``
   detection frames, is dropped with the reason.

Nothing of a frame outlives its turn but the crops of live tracks (``verify_crops`` per track, each at most
``budgets.verify_pixels``), so memory does not grow with the video's length beyond one row per box seen.

``every_frame`` is what it is measured against: the image cascade (filter, ground, verify, identify) on
every frame, its boxes tied into tracks by the same tracker."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from pipeline import deadline, stages
from pipeline.cascade import Pipeline, timed
from pipeline.config import VideoSettings
from pipeline.crops import padded_box
from pipeline.detections import Detections
from pipeline.images import Photo
from pipeline.providers.base import Grounder
from pipeline.video.decode import Video, VideoInfo, VideoLimits
from pipeline.video.scenes import THUMBNAIL_SIDE, CutFinder
from pipeline.video.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class VideoResult:
    """The boxes seen (one row per box on a detection frame; ``extra["frame"]`` its 0-based frame,
    ``extra["track"]`` its track, -1 for none), every box's fate as in ``Detections``: only the boxes of
    kept tracks are kept, each with its track's verify score and identity."""
    info: VideoInfo
    boxes: Detections
    tracks: dict = field(default_factory=dict)  # track id -> {"label", "boxes", "score", "kept", "reason"}
    cuts: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # keyframes, between, verify crops, ...
    timings: dict = field(default_factory=dict)  # stage -> seconds
    max_gap: int = 1  # frames between two detection frames, at most (where a track's span may go on)
    seconds: float = 0.0

    def kept_tracks(self) -> list[int]:
        return sorted(t for t, v in self.tracks.items() if v["kept"])

    def to_record(self) -> dict:
        return {"video": self.info.to_json(), "cuts": self.cuts, "counts": self.counts,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}, "seconds": round(self.seconds, 3),
                "tracks": {str(k): v for k, v in self.tracks.items()}}


@dataclass
class _Track:
    label: str
    rows: list = field(default_factory=list)
    crops: list = field(default_factory=list)  # (quality, crop image, box in the crop)
    last: float = 0.0


class _Boxes:
    """The rows of ``VideoResult.boxes``, gathered frame by frame."""

    def __init__(self):
        self.xyxy, self.scores, self.labels, self.frames, self.tracks = [], [], [], [], []
        self.previous: dict[int, list[int]] = {}  # the rows of the detection frame before the last

    def add(self, dets: Detections, frame: int, ids: np.ndarray) -> list[int]:
        """Rows for one detection frame's boxes and their track ids."""
        start = len(self.xyxy)
        if self.frames:  # the last frame's rows are the last rows
            first = start
            while first > 0 and self.frames[first - 1] == self.frames[-1]:
                first -= 1
            self.previous = {self.frames[-1]: list(range(first, start))}
        self.xyxy += list(dets.xyxy)
        self.scores += list(dets.scores)
        self.labels += list(dets.labels)
        self.frames += [frame] * len(dets)
        self.tracks += [int(t) for t in ids]
        return list(range(start, len(self.xyxy)))

    def late(self, tracker: Tracker) -> list[tuple[int, int]]:
        """(row, track id) of the previous detection frame's boxes that started a track confirmed now."""
        out = []
        for frame, k, tid in tracker.late:
            row = self.previous[frame][k]
            self.tracks[row] = tid
            out.append((row, tid))
        return out

    def detections(self) -> Detections:
        return Detections(xyxy=np.array(self.xyxy, np.float32).reshape(-1, 4), scores=self.scores, labels=self.labels,
                          extra={"frame": np.array(self.frames, int), "track": np.array(self.tracks, int)})


class VideoCascade:
    """The project's ``Pipeline`` (its grounder, VLM, identifier, thresholds and budgets) run on a video as
    ``video`` settings say (the project's own by default)."""

    def __init__(self, pipeline: Pipeline, settings: Optional[VideoSettings] = None,
                 between: Optional[Grounder] = None):
        self.pipeline = pipeline
        self.settings = settings or pipeline.config.video
        self._between = between

    @property
    def between(self) -> Grounder:
        if self._between is None:
            if self.settings.between is None:
                self._between = self.pipeline.grounder
            else:
                from pipeline.providers.registry import get_grounder
                self._between = get_grounder(self.settings.between)
        return self._between

    def run(self, path: Union[str, Path], limits: Optional[VideoLimits] = None) -> VideoResult:
        cfg, st = self.pipeline.config, self.settings
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        counts = {"frames": 0, "keyframes": 0, "between": 0, "between_skipped": 0, "verify_crops": 0}
        with Video(path, limits or VideoLimits.from_env()) as video:
            info = video.info
            cuts = CutFinder(info.fps, threshold=st.scene_threshold)
            tracker = Tracker(info.fps, lost_seconds=st.lost_seconds)
            boxes, live, done = _Boxes(), {}, {}
            queries = cfg.query_labels()
            last_key = None
            for frame in video.frames(small_side=THUMBNAIL_SIDE):
                counts["frames"] += 1
                i = frame.index
                with timed(timings, "scenes"):
                    cut = cuts.feed(i, frame.small)
                if cut:
                    tracker.cut()
                    self._finish(live, done, boxes, None, timings, counts)
                key = cut or last_key is None or i - last_key >= st.keyframe_every
                between = not key and st.detect_every and (i - last_key) % st.detect_every == 0
                if between and not self._time_for_between(timings, counts, info.frames - i):
                    counts["between_skipped"] += 1
                    between = False
                if not (key or between):
                    continue
                photo = frame.photo()
                with timed(timings, "ground" if key else "between"):
                    dets = stages.ground(self.pipeline.grounder if key else self.between, photo, queries,
                                         cfg.thresholds, max_pixels=cfg.budgets.ground_pixels).active()
                counts["keyframes" if key else "between"] += 1
                if key:
                    last_key = i
                    self._fits(t0, i, info, counts)
                with timed(timings, "track"):
                    ids = tracker.update(dets, frame.time, key=i)
                    rows = boxes.add(dets, i, ids)
                    for row, tid in boxes.late(tracker):  # the box that started a track, a detection frame ago
                        live.setdefault(tid, _Track(str(boxes.labels[row]))).rows.append(row)
                    for k, (row, tid) in enumerate(zip(rows, ids)):
                        if tid < 0:
                            continue
                        tr = live.setdefault(int(tid), _Track(str(dets.labels[k])))
                        tr.rows.append(row)
                        tr.last = frame.time
                        self._keep_crop(tr, photo, dets.xyxy[k], dets.scores[k])
                ended = [t for t, tr in live.items() if frame.time - tr.last > st.lost_seconds + 1.0 / info.fps]
                if ended:
                    self._finish(live, done, boxes, ended, timings, counts)
            self._finish(live, done, boxes, None, timings, counts)
        result = self._result(info, boxes, done, cuts.cuts, counts, timings)
        result.seconds = time.perf_counter() - t0
        result.timings["decode_and_rest"] = result.seconds - sum(v for k, v in timings.items())
        return result

    # -- steps ---------------------------------------------------------------------------------
    @staticmethod
    def _fits(t0: float, i: int, info: VideoInfo, counts: dict) -> None:
        """Under a deadline, stop as soon as the frames so far say the rest will not fit (from the second
        keyframe on): ``DeadlineExceeded`` saying how far it got and what the rest would need."""
        left = deadline.remaining()
        if left is None or counts["keyframes"] < 2:
            return
        spent = time.perf_counter() - t0
        need = spent / (i + 1) * (info.frames - i - 1)
        if need > left:
            raise deadline.DeadlineExceeded(
                f"{i + 1:,} of {info.frames:,} frames took {spent:.1f} s; the rest would take about {need:.0f} s "
                f"more and {max(0.0, left):.0f} s are left of {deadline.current().describe()}")

    def _time_for_between(self, timings: dict, counts: dict, frames_left: int) -> bool:
        """Whether the deadline in force (if any) leaves time for the boxes between keyframes: the rest of
        the video at the seconds per keyframe and per between-frame seen so far."""
        left = deadline.remaining()
        if left is None:
            return True
        st = self.settings
        per_key = timings.get("ground", 0.0) / max(1, counts["keyframes"])
        per_between = timings.get("between", per_key) / max(1, counts["between"])
        need = frames_left / st.keyframe_every * per_key + frames_left / max(1, st.detect_every) * per_between
        return need < left

    def _keep_crop(self, tr: _Track, photo: Photo, xyxy, score) -> None:
        """Keep the box's padded crop if it is one of the track's ``verify_crops`` best (score x size)."""
        st, cfg = self.settings, self.pipeline.config
        size = float(np.sqrt(max(1.0, (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1]))))
        quality = (1.0 if np.isnan(score) else float(score)) * size
        if len(tr.crops) >= st.verify_crops and quality <= min(c[0] for c in tr.crops):
            return
        l, t, r, b = padded_box(xyxy, photo.width, photo.height, cfg.thresholds.crop_padding)
        image = photo.region((l, t, r, b), cfg.budgets.verify_pixels)
        k = image.width / (r - l)
        inner = np.array([(xyxy[0] - l) * k, (xyxy[1] - t) * k, (xyxy[2] - l) * k, (xyxy[3] - t) * k])
        tr.crops.append((quality, image, inner))
        tr.crops.sort(key=lambda c: -c[0])
        del tr.crops[st.verify_crops:]

    def _finish(self, live: dict, done: dict, boxes: _Boxes, ended: Optional[list], timings: dict,
                counts: dict) -> None:
        """Verify and identify the tracks that ended (all live ones when ``ended`` is None), once each."""
        cfg, st = self.pipeline.config, self.settings
        ids = list(live) if ended is None else ended
        if not ids:
            return
        finished = {t: live.pop(t) for t in ids}
        verdicts = {t: {"label": tr.label, "boxes": len(tr.rows), "score": None, "kept": True, "reason": ""}
                    for t, tr in finished.items()}
        for t, tr in finished.items():
            if len(tr.rows) < st.min_track_boxes:
                verdicts[t].update(kept=False, reason=f"track: seen on {len(tr.rows)} detection frame(s) < "
                                                      f"video.min_track_boxes={st.min_track_boxes}")
            scores = np.array([boxes.scores[r] for r in tr.rows], float)
            if not np.isnan(scores).all():
                verdicts[t]["score"] = float(np.nanmean(scores))
        todo = [t for t in finished if verdicts[t]["kept"]]
        if cfg.stages.verify and todo:
            questions = stages.verify_questions({finished[t].label for t in todo}, cfg.prompts.verify, cfg.label,
                                                cfg.target_object)
            with timed(timings, "verify"):
                for question in sorted(set(questions.values())):
                    members = [t for t in todo if questions[finished[t].label] == question]
                    crops = [c[1] for t in members for c in finished[t].crops]
                    answers = self.pipeline.vlm.yes_probabilities(crops, question)
                    if len(answers) != len(crops):
                        raise RuntimeError(f"VLM returned {len(answers)} answers for {len(crops)} crops")
                    counts["verify_crops"] += len(crops)
                    k = 0
                    for t in members:
                        n = len(finished[t].crops)
                        p = float(np.mean([a.p_yes for a in answers[k:k + n]]))
                        k += n
                        verdicts[t]["score"] = p
                        need = cfg.thresholds.verify_for(finished[t].label)
                        if p < need:
                            verdicts[t].update(kept=False, reason=f"verify: track P(yes) {p:.3f} < {need}")
        identifier = self.pipeline.identifier
        if cfg.stages.identify and identifier is not None:
            with timed(timings, "identify"):
                for t in todo:
                    if not verdicts[t]["kept"] or not finished[t].crops:
                        continue
                    _, image, inner = finished[t].crops[0]
                    one = Detections(xyxy=[inner], scores=[np.nan], labels=[finished[t].label])
                    identifier(Photo.of(image), one)
                    verdicts[t]["identity"] = one.identities[0]
        for t, tr in finished.items():
            done[t] = (tr, verdicts[t])

    def _result(self, info: VideoInfo, boxes: _Boxes, done: dict, cuts: list, counts: dict,
                timings: dict) -> VideoResult:
        dets = boxes.detections()
        track = dets.extra["track"]
        dets.drop(track < 0, "track", "track: in no track")
        scores = np.full(len(dets), np.nan)
        identities = [None] * len(dets)
        tracks = {}
        for t, (tr, verdict) in sorted(done.items()):
            rows = np.array(tr.rows, int)
            identity = verdict.pop("identity", None)
            if verdict["kept"]:
                if verdict["score"] is not None:
                    scores[rows] = verdict["score"]
                for r in rows:
                    identities[r] = identity
            else:
                mask = np.zeros(len(dets), bool)
                mask[rows] = True
                dets.drop(mask, verdict["reason"].split(":")[0], verdict["reason"])
            frames = dets.extra["frame"][rows]
            tracks[t] = {**verdict, "first_frame": int(frames.min()), "last_frame": int(frames.max()),
                         **({"identity": identity.to_json() if hasattr(identity, "to_json") else str(identity)}
                            if identity is not None else {})}
        if self.pipeline.config.stages.verify:
            dets.set_verify_scores(np.arange(len(dets)), scores)
        dets.mark(dets.kept, "track")
        dets.set_identities(np.arange(len(dets)), identities)
        st = self.settings
        max_gap = min(st.keyframe_every, st.detect_every) if st.detect_every else st.keyframe_every
        if counts.get("between_skipped"):
            max_gap = st.keyframe_every
        return VideoResult(info, dets, tracks, sorted(cuts), counts, timings, max_gap)


def every_frame(pipeline: Pipeline, path: Union[str, Path], limits: Optional[VideoLimits] = None,
                lost_seconds: float = 1.5) -> VideoResult:
    """The image cascade (filter, ground, verify, identify) on every frame, its boxes tied into tracks by the
    same tracker: what the video cascade saves."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    boxes = _Boxes()
    counts = {"frames": 0}
    with Video(path, limits or VideoLimits.from_env()) as video:
        info = video.info
        tracker = Tracker(info.fps, lost_seconds=lost_seconds)
        for frame in video.frames():
            counts["frames"] += 1
            res = pipeline.run(frame.photo())
            for k, v in res.timings.items():
                timings[k] = timings.get(k, 0.0) + v
            dets = res.detections.active()
            with timed(timings, "track"):
                boxes.add(dets, frame.index, tracker.update(dets, frame.time, key=frame.index))
                boxes.late(tracker)
    dets = boxes.detections()
    dets.drop(dets.extra["track"] < 0, "track", "track: in no track")
    tracks = {int(t): {"label": str(dets.labels[dets.extra["track"] == t][0]), "kept": True,
                       "boxes": int((dets.extra["track"] == t).sum())}
              for t in np.unique(dets.extra["track"]) if t >= 0}
    result = VideoResult(info, dets, tracks, [], counts, timings, 1)
    result.seconds = time.perf_counter() - t0
    return result

