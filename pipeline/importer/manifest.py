"""The manifest: ``data_root/manifest.jsonl``, one JSON object per stored image.

Fields: ``id`` (sha256[:16]), ``path`` (relative to data_root), ``bucket``, ``source``, ``query``,
``image_url``, ``page_url``, ``license``, ``attribution``, ``title``, ``sha256``, ``phash``,
``width``, ``height``, ``bytes``, ``added`` (UTC ISO time), ``aliases`` (other URLs/buckets/
queries that turned out to be the same image: ``{source, bucket, query, image_url, page_url,
kind, distance}``) and ``label_studio`` (``{"<LS url>#<project id>": task id}``).
Re-runs skip every URL already in here (original or alias) and every image whose sha256 or
pHash matches one in here."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from pipeline.atomic import save_text
from pipeline.importer.dedupe import DedupeIndex

FILENAME = "manifest.jsonl"


class Manifest:
    def __init__(self, data_root: Path, entries: Optional[list[dict]] = None):
        self.data_root = Path(data_root)
        self.path = self.data_root / FILENAME
        self.entries: dict[str, dict] = {}
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()
        for e in entries or []:
            self._index(e)

    @classmethod
    def load(cls, data_root) -> "Manifest":
        data_root = Path(data_root)
        path = data_root / FILENAME
        entries = []
        if path.exists():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON: {e}") from None
        return cls(data_root, entries)

    def _index(self, e: dict) -> None:
        self.entries[e["id"]] = e
        self._urls.setdefault(e["image_url"], e["id"])
        for a in e.get("aliases", []):
            self._urls.setdefault(a["image_url"], e["id"])

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[dict]:
        return iter(list(self.entries.values()))

    def knows_url(self, url: str) -> Optional[str]:
        return self._urls.get(url)

    def dedupe_index(self, max_distance: int) -> DedupeIndex:
        idx = DedupeIndex(max_distance)
        for e in self.entries.values():
            idx.add(e["id"], e["sha256"], e.get("phash", ""))
        return idx

    def add(self, entry: dict) -> dict:
        entry.setdefault("added", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        entry.setdefault("aliases", [])
        entry.setdefault("label_studio", {})
        with self._lock:
            self._index(entry)
        return entry

    def add_alias(self, entry_id: str, alias: dict) -> None:
        with self._lock:
            e = self.entries[entry_id]
            if all(a["image_url"] != alias["image_url"] for a in e["aliases"]) and e["image_url"] != alias["image_url"]:
                e["aliases"].append(alias)
            self._urls.setdefault(alias["image_url"], entry_id)

    def file(self, entry: dict) -> Path:
        return self.data_root / entry["path"]

    def save(self) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            lines = [json.dumps(e, ensure_ascii=False, sort_keys=True) for e in self.entries.values()]
        save_text(self.path, "\n".join(lines) + ("\n" if lines else ""))
