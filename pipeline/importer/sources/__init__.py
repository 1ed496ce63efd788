"""Image sources: DuckDuckGo (ddgs), Wikimedia Commons, Openverse."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from pipeline.importer.http import Http
    from pipeline.importer.sources.base import Source
    from pipeline.importer.sources.ddg import SearchFn

ALL = ("ddg", "wikimedia", "openverse")  # importing this package loads no source (the CLI's help stays fast)


def build_sources(names, http: "Http", *, ddg_search: "Optional[SearchFn]" = None, ddg_backoff: float = 5.0,
                  ddg_attempts: int = 3, max_bytes: Optional[int] = None) -> "list[Source]":
    """Sources by name; base URLs come from LF_WIKIMEDIA_API / LF_OPENVERSE_API (or the public
    endpoints); ``ddg_search`` replaces the ddgs call (see sources/ddg.py)."""
    from pipeline.importer.sources.ddg import DDGSource
    from pipeline.importer.sources.openverse import OpenverseSource
    from pipeline.importer.sources.wikimedia import WikimediaSource
    out = []
    for name in names:
        name = name.strip().lower()
        if name in ("ddg", "duckduckgo", "ddgs"):
            out.append(DDGSource(search_fn=ddg_search, backoff=ddg_backoff, attempts=ddg_attempts))
        elif name in ("wikimedia", "commons", "wikimedia-commons"):
            out.append(WikimediaSource(http, max_bytes=max_bytes))
        elif name == "openverse":
            out.append(OpenverseSource(http))
        elif name:
            raise ValueError(f"unknown source {name!r}; choose from {', '.join(ALL)}")
    return out


__all__ = ["ALL", "Source", "SourceError", "SourceGaveUp", "DDGSource", "WikimediaSource",
           "OpenverseSource", "build_sources"]
