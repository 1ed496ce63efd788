"""Wikimedia Commons via the MediaWiki Action API.

Request: ``action=query&generator=search&gsrsearch=Q&gsrnamespace=6&gsrlimit=N
&prop=imageinfo&iiprop=url|extmetadata|mime|size&format=json&formatversion=2``.
Fields relied on (documented at mediawiki.org API:Imageinfo and API:Search):
``query.pages[]`` (a list with formatversion=2, an object keyed by page id with the default
formatversion=1 — both are read), per page ``title``, ``index`` (search rank) and
``imageinfo[0]`` with ``url`` (original file), ``thumburl`` (present when ``iiurlwidth`` is sent:
a rendition at most that wide — the original's URL when it is narrower), ``descriptionurl``
(file page), ``mime``,
``size``, ``width``, ``height`` and ``extmetadata`` entries ``{"value": ...}``:
``LicenseShortName``, ``Artist`` (HTML), ``Credit`` (HTML), ``Attribution``,
``AttributionRequired``, ``LicenseUrl``.
"""
from __future__ import annotations

import os
from typing import Optional

from pipeline.importer.http import Http
from pipeline.importer.records import Candidate
from pipeline.importer.sources.base import Source, SourceError, api_errors, strip_html

DEFAULT_API = "https://commons.wikimedia.org/w/api.php"
SUPPORTED_MIME = ("image/jpeg", "image/png", "image/webp", "image/gif")


class WikimediaSource(Source):
    name = "wikimedia"

    def __init__(self, http: Http, api_url: Optional[str] = None, max_bytes: Optional[int] = None,
                 thumb_width: Optional[int] = None):
        self.http = http
        self.api_url = api_url or os.environ.get("LF_WIKIMEDIA_API") or DEFAULT_API
        self.max_bytes = max_bytes
        # Originals on Commons are often 20+ MP / 10+ MB; a 2048 px rendition is plenty for labelling.
        # LF_WIKIMEDIA_THUMB_WIDTH=0 downloads the originals.
        self.thumb_width = int(os.environ.get("LF_WIKIMEDIA_THUMB_WIDTH", "2048")) if thumb_width is None \
            else thumb_width

    def describe(self) -> str:
        return f"{self.name} ({self.api_url})"

    def search(self, query: str, bucket: str, limit: int) -> list[Candidate]:
        params = {
            "action": "query", "format": "json", "formatversion": "2",
            "generator": "search", "gsrsearch": f"filetype:bitmap {query}", "gsrnamespace": "6",
            "gsrlimit": str(max(1, min(limit * 2, 50))),   # over-fetch: some hits are not photos
            "prop": "imageinfo", "iiprop": "url|extmetadata|mime|size",
        }
        if self.thumb_width > 0:
            params["iiurlwidth"] = str(self.thumb_width)
        with api_errors():
            data = self.http.get_json(self.api_url, params=params)
        if "error" in data:
            err = data["error"]
            raise SourceError(f"API error {err.get('code')}: {err.get('info')}")
        pages = (data.get("query") or {}).get("pages") or []
        if isinstance(pages, dict):
            pages = list(pages.values())
        pages = sorted(pages, key=lambda p: p.get("index", 1 << 30))
        out: list[Candidate] = []
        for page in pages:
            infos = page.get("imageinfo") or []
            if not infos:
                continue
            info = infos[0]
            mime = info.get("mime", "")
            if mime and mime not in SUPPORTED_MIME:
                continue   # SVG, TIFF, PDF, DjVu, video ...
            url = info.get("thumburl") or info.get("url")
            if not info.get("thumburl") and self.max_bytes and (info.get("size") or 0) > self.max_bytes:
                continue
            if not url:
                continue
            meta = info.get("extmetadata") or {}

            def val(key: str, meta: dict = meta) -> str:
                return strip_html((meta.get(key) or {}).get("value"))

            license_ = val("LicenseShortName") or val("License")
            author = val("Artist") or val("Credit")
            attribution = val("Attribution")
            if not attribution:
                parts = [p for p in (author, license_) if p]
                attribution = ", ".join(parts) + (" via Wikimedia Commons" if parts else "")
            out.append(Candidate(source=self.name, bucket=bucket, query=query, image_url=url,
                                 page_url=info.get("descriptionurl", ""), license=license_,
                                 attribution=attribution, title=page.get("title", ""),
                                 rank=len(out)))
            if len(out) >= limit:
                break
        return out
