"""Openverse image search (``GET {base}/images/?q=Q&page_size=N&page=P``), no key needed.

Fields relied on (Openverse API docs, ImageSerializer): ``results[]`` with ``url`` (direct
file), ``foreign_landing_url`` (the work's page at its provider), ``license`` (code such as
``by-sa``, ``cc0``, ``pdm``), ``license_version``, ``creator``, ``attribution`` (ready-made credit
line), ``title``, ``filetype`` (may be null), ``mature``; top level ``page_count``.
Anonymous callers may ask for at most 20 per page and are throttled with HTTP 429. How deep a
search may page is capped (``page`` 21 answers HTTP 400 "limited to the first 20 pages"; today the
API also stops anonymous searches at 240 works): the search stops at page 20, or at the first
HTTP 400 past page 1, keeping the pages fetched, with a note. A key (LF_OPENVERSE_TOKEN) buys
pages of up to 500, not more depth.
"""
from __future__ import annotations

from typing import Optional

from pipeline.importer.http import Http
from pipeline.importer.records import Candidate
from pipeline.importer.sources.base import Source, SourceError, api_errors
from pipeline.settings import Importer

ANON_PAGE_SIZE = 20
MAX_PAGE = 20           # deepest page the API serves


def license_name(code: str, version: str) -> str:
    code = (code or "").strip()
    if not code:
        return ""
    if code in ("pdm",):
        return "Public Domain Mark" + (f" {version}" if version else "")
    if code == "cc0":
        return "CC0" + (f" {version}" if version else "")
    return f"CC {code.upper()}" + (f" {version}" if version else "")


class OpenverseSource(Source):
    name = "openverse"

    def __init__(self, http: Http, api_url: Optional[str] = None, token: Optional[str] = None):
        super().__init__()
        self.http = http
        env = Importer.read()
        self.api_url = (api_url or env.openverse_api).rstrip("/")
        self.token = token or env.openverse_token.get_secret_value() or None

    def describe(self) -> str:
        return f"{self.name} ({self.api_url})"

    def _page(self, query: str, page: int, page_size: int) -> Optional[dict]:
        """One page of results; None when the API refuses to page this deep (HTTP 400 past page 1)."""
        params = {"q": query, "page_size": str(page_size), "page": str(page), "mature": "false"}
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        with api_errors():
            resp = self.http.get(f"{self.api_url}/images/", params=params, headers=headers)
            if resp.status_code == 400 and page > 1:
                self.note(f"{query!r}: Openverse refused page {page} (HTTP 400: {resp.text[:160]}); "
                          f"kept the results of pages 1-{page - 1}")
                return None
            if resp.status_code >= 400:
                raise SourceError(f"HTTP {resp.status_code} for {resp.url}: {resp.text[:200]}")
            return resp.json()

    def pages(self, query: str, bucket: str, limit: int):
        page_size = max(1, min(limit, 500 if self.token else ANON_PAGE_SIZE))
        for page in range(1, MAX_PAGE + 1):
            data = self._page(query, page, page_size)
            if data is None:
                return
            results = data.get("results") or []
            yield [self._candidate(item, query, bucket) for item in results
                   if item.get("url") and not item.get("mature")]
            if not results or page >= int(data.get("page_count") or 0):
                return
        self.note(f"{query!r}: stopped at Openverse's page cap ({MAX_PAGE} pages of {page_size})")

    def _candidate(self, item: dict, query: str, bucket: str) -> Candidate:
        return Candidate(
            source=self.name, bucket=bucket, query=query, image_url=item["url"],
            page_url=item.get("foreign_landing_url") or "",
            license=license_name(item.get("license", ""), item.get("license_version") or ""),
            attribution=item.get("attribution") or (str(item["creator"]) if item.get("creator") else ""),
            title=item.get("title") or "")
