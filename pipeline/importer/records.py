"""Plain data passed between the importer's steps: a search hit and the run summary."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass
class Candidate:
    """One image found by a source for a (bucket, query)."""
    source: str            # "ddg" | "wikimedia" | "openverse"
    bucket: str
    query: str
    image_url: str
    page_url: str = ""
    license: str = ""      # e.g. "CC BY-SA 4.0", "cc0 1.0"; "" when the source does not say
    attribution: str = ""  # credit line, "" when unknown
    title: str = ""
    rank: int = 0          # position in the source's answer for this query

    def meta(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("rank",)}


@dataclass
class SourceStatus:
    name: str
    queries: int = 0          # queries searched successfully
    found: int = 0
    failed_queries: int = 0   # errors on single queries (the source went on)
    gave_up: Optional[str] = None   # why the source was abandoned (e.g. rate-limited), None = completed
    skipped_queries: int = 0  # queries never searched because the source gave up
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # queries that stopped short of their limit, and why


@dataclass
class Summary:
    dry_run: bool = False
    sources: dict[str, SourceStatus] = field(default_factory=dict)
    found: int = 0              # candidates returned by all sources
    known: int = 0              # URL already in the manifest (earlier run): not downloaded again
    downloaded: int = 0         # new images stored this run
    duplicates: Counter = field(default_factory=Counter)   # kind -> count (url, sha256, phash)
    rejected: Counter = field(default_factory=Counter)     # reason -> count
    imported: int = 0           # Label Studio tasks created this run
    already_imported: int = 0   # images whose task already existed
    label_studio: str = ""      # what happened on the Label Studio side (project id, skipped, ...)
    backend: str = ""           # --connect-backend outcome
    per_bucket: Counter = field(default_factory=Counter)   # bucket -> new images stored
    warnings: list[str] = field(default_factory=list)

    @property
    def n_duplicates(self) -> int:
        return sum(self.duplicates.values())

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duplicates"] = dict(self.duplicates)
        d["rejected"] = dict(self.rejected)
        d["per_bucket"] = dict(self.per_bucket)
        return d

    def lines(self) -> list[str]:
        """Plain-text summary (also what the rich table shows)."""
        out = [f"found {self.found} / downloaded {self.downloaded} / duplicates {self.n_duplicates} / "
               f"rejected {self.n_rejected} / imported {self.imported}"
               + (" (dry run: nothing downloaded or imported)" if self.dry_run else "")]
        for s in self.sources.values():
            state = f"gave up: {s.gave_up}" if s.gave_up else "ok"
            extra = f", {s.failed_queries} failed queries" if s.failed_queries else ""
            skipped = f", {s.skipped_queries} queries not searched" if s.skipped_queries else ""
            out.append(f"  source {s.name}: {s.found} found in {s.queries} queries{extra}{skipped} — {state}")
            out += [f"    note: {n}" for n in s.notes]
        if self.known:
            out.append(f"  already in the manifest (not downloaded again): {self.known}")
        for kind, n in sorted(self.duplicates.items()):
            out.append(f"  duplicate ({kind}): {n}")
        for reason, n in sorted(self.rejected.items()):
            out.append(f"  rejected ({reason}): {n}")
        for bucket, n in sorted(self.per_bucket.items()):
            out.append(f"  {'new URLs' if self.dry_run else 'new images'} in {bucket}: {n}")
        if self.already_imported:
            out.append(f"  already in Label Studio: {self.already_imported}")
        if self.label_studio:
            out.append(f"  Label Studio: {self.label_studio}")
        if self.backend:
            out.append(f"  ML backend: {self.backend}")
        out += [f"  warning: {w}" for w in self.warnings]
        return out
