"""``label-factory import --videos DIR_OR_URL``: frames of videos into the image project.

Each video (a file in a folder, searched recursively, or an http(s) URL fetched through the importer's
session: rate-limited, retried, streamed to a temporary file and cut off at VIDEO_MAX_BYTES) is sampled
scene-aware (``pipeline.video.sampling``: every scene's first frame and every ``--frame-stride`` frames, at
most ``--frames-per-video``); a frame whose sha256 or pHash matches one already in the manifest (another
frame, another video, a photo) is a duplicate, as for photos. A kept frame is stored as a JPEG under
``data_root/video/<video>/`` with a manifest entry whose ``data`` (``video``, ``frame``, ``time``) goes into
its task's data, so every task says which video and which frame it came from. A video that cannot be read
(corrupt, unsupported, over a limit) is counted as rejected with the reason; the others go on."""
from __future__ import annotations

import hashlib
import io
import logging
import re
import tempfile
from pathlib import Path
from typing import Iterable

from pipeline.atomic import save_atomic
from pipeline.importer.http import Http
from pipeline.importer.manifest import Manifest
from pipeline.importer.records import Summary
from pipeline.retry import Transient
from pipeline.video.decode import VideoLimits, VideoLoadError
from pipeline.video.sampling import sample

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts")
JPEG_QUALITY = 95


def video_sources(items: Iterable[str]) -> list[str]:
    """The videos named: http(s) URLs as they are, folders searched for video files, files as they are."""
    out = []
    for item in items:
        if re.match(r"^https?://", item):
            out.append(item)
            continue
        p = Path(item).expanduser()
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file())
        else:
            out.append(str(p))
    return out


def _download(http: Http, url: str, dest: Path, max_bytes: int) -> None:
    resp = http.get(url, stream=True)
    with resp:
        if resp.status_code >= 400:
            raise VideoLoadError(f"{url}: HTTP {resp.status_code}")
        n = 0
        with open(dest, "wb") as out:
            for chunk in resp.iter_content(256 * 1024):
                n += len(chunk)
                if n > max_bytes:
                    raise VideoLoadError(f"{url}: more than {max_bytes:,} bytes (VIDEO_MAX_BYTES); stopped reading")
                out.write(chunk)


def import_videos(sources: list[str], manifest: Manifest, http: Http, summary: Summary, *, stride: int,
                  per_video: int, phash_distance: int) -> list[dict]:
    """Sample every video into the manifest; returns the new entries (``summary`` counts the rest)."""
    limits = VideoLimits.from_env()
    index = manifest.dedupe_index(phash_distance)
    new: list[dict] = []
    for source in video_sources(sources):
        with tempfile.TemporaryDirectory(prefix="lf-import-video-") as tmp:
            try:
                path = source
                if re.match(r"^https?://", source):
                    path = str(Path(tmp) / "video")
                    _download(http, source, Path(path), limits.max_bytes)
                info, picks = sample(path, stride, per_video, limits)
                stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.split("?")[0]).stem)[:60] or "video"
                for pick in picks:
                    summary.found += 1
                    buf = io.BytesIO()
                    pick.image.save(buf, "JPEG", quality=JPEG_QUALITY)
                    data = buf.getvalue()
                    sha = hashlib.sha256(data).hexdigest()
                    dup = index.find(sha, pick.phash)
                    if dup:
                        summary.duplicates["identical bytes (sha256)" if dup[0] == "sha256"
                                           else "perceptual (pHash)"] += 1
                        continue
                    rel = Path("video") / stem / f"{sha[:16]}.jpg"
                    save_atomic(manifest.data_root / rel, lambda out, data=data: out.write(data))
                    entry = manifest.add({
                        "id": sha[:16], "path": rel.as_posix(), "bucket": f"video/{stem}", "source": "video",
                        "query": "", "image_url": f"{source}#frame={pick.index}", "page_url": "", "license": "",
                        "attribution": "", "title": f"{Path(source).name} frame {pick.index} ({pick.why})",
                        "sha256": sha, "phash": pick.phash, "width": pick.image.width, "height": pick.image.height,
                        "bytes": len(data),
                        "data": {"video": source, "frame": pick.index, "time": round(pick.time, 3)}})
                    index.add(entry["id"], sha, pick.phash)
                    new.append(entry)
                    summary.downloaded += 1
                    summary.per_bucket[entry["bucket"]] += 1
                log.info("%s: %d frames, %d fps: sampled", source, info.frames, round(info.fps))
            except (VideoLoadError, Transient, OSError) as e:
                summary.rejected[f"video: {type(e).__name__}"] += 1
                summary.warnings.append(f"{source}: {e}")
    return new
