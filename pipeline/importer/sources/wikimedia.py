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

Paging (mediawiki.org API:Continue): an answer that has more carries ``continue`` (e.g.
``{"gsroffset": 50, "continue": "gsroffset||"}``); its keys are sent back as they are with the
same query for the next batch, until an answer has no ``continue``. Batches are at most 50 files
(``gsrlimit``, each with its rendition). Pages repeat across batches when ``iicontinue`` is
involved: repeats are dropped.

Formats: JPEG, PNG, WebP and GIF files are used as they are (or as a ``thumburl`` rendition);
TIFF only through its ``thumburl`` (Commons renders TIFFs to JPEG; browsers cannot show TIFF).
SVG, PDF, DjVu, video and audio are skipped.
"""
from __future__ import annotations

from typing import Optional

from pipeline.importer.http import Http
from pipeline.importer.records import Candidate
from pipeline.importer.sources.base import Source, SourceError, api_errors, strip_html
from pipeline.settings import Importer

SUPPORTED_MIME = ("image/jpeg", "image/png", "image/webp", "image/gif")
THUMB_ONLY_MIME = ("image/tiff",)     # usable through the JPEG rendition only
BATCH = 50                            # gsrlimit per request


class WikimediaSource(Source):
    name = "wikimedia"

    def __init__(self, http: Http, api_url: Optional[str] = None, max_bytes: Optional[int] = None,
                 thumb_width: Optional[int] = None):
        super().__init__()
        self.http = http
        env = Importer.read()
        self.api_url = api_url or env.wikimedia_api
        self.max_bytes = max_bytes
        # Originals on Commons are often 20+ MP / 10+ MB; a 2048 px rendition is plenty for labelling.
        # LF_WIKIMEDIA_THUMB_WIDTH=0 downloads the originals.
        self.thumb_width = env.wikimedia_thumb_width if thumb_width is None else thumb_width

    def describe(self) -> str:
        return f"{self.name} ({self.api_url})"

    def pages(self, query: str, bucket: str, limit: int):
        params = {
            "action": "query", "format": "json", "formatversion": "2",
            "generator": "search", "gsrsearch": f"filetype:bitmap {query}", "gsrnamespace": "6",
            "gsrlimit": str(max(1, min(limit * 2, BATCH))),   # over-fetch: some hits are not photos
            "prop": "imageinfo", "iiprop": "url|extmetadata|mime|size",
        }
        if self.thumb_width > 0:
            params["iiurlwidth"] = str(self.thumb_width)
        cont: dict = {}
        while True:
            with api_errors():
                data = self.http.get_json(self.api_url, params={**params, **cont})
            if "error" in data:
                err = data["error"]
                raise SourceError(f"API error {err.get('code')}: {err.get('info')}")
            pages = (data.get("query") or {}).get("pages") or []
            if isinstance(pages, dict):
                pages = list(pages.values())
            pages = sorted(pages, key=lambda p: p.get("index", 1 << 30))
            yield [c for c in (self._candidate(page, query, bucket) for page in pages) if c]
            nxt = data.get("continue")
            nxt = {k: str(v) for k, v in nxt.items()} if isinstance(nxt, dict) else {}
            if not nxt or nxt == cont:
                return
            cont = nxt

    def _candidate(self, page: dict, query: str, bucket: str) -> Optional[Candidate]:
        infos = page.get("imageinfo") or []
        if not infos:
            return None
        info = infos[0]
        mime = info.get("mime", "")
        thumb = info.get("thumburl")
        if mime and mime not in SUPPORTED_MIME and not (mime in THUMB_ONLY_MIME and thumb):
            return None   # SVG, PDF, DjVu, video; TIFF without a rendition
        if not thumb and self.max_bytes and (info.get("size") or 0) > self.max_bytes:
            return None
        url = thumb or info.get("url")
        if not url:
            return None
        meta = info.get("extmetadata") or {}

        def val(key: str) -> str:
            return strip_html((meta.get(key) or {}).get("value"))

        license_ = val("LicenseShortName") or val("License")
        author = val("Artist") or val("Credit")
        attribution = val("Attribution")
        if not attribution:
            parts = [p for p in (author, license_) if p]
            attribution = ", ".join(parts) + (" via Wikimedia Commons" if parts else "")
        return Candidate(source=self.name, bucket=bucket, query=query, image_url=url,
                         page_url=info.get("descriptionurl", ""), license=license_,
                         attribution=attribution, title=page.get("title", ""))
