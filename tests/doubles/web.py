"""Loopback stand-in for the web image APIs (Wikimedia Commons, Openverse) and the image hosts.

It replays the documented response shapes; the importer is pointed at it by configuration
(LF_WIKIMEDIA_API=<base>/w/api.php, LF_OPENVERSE_API=<base>/v1), not by patching.

Fields the importer relies on (and that are reproduced here as the real APIs send them):

Wikimedia Commons — MediaWiki Action API, ``action=query&generator=search&gsrnamespace=6
&prop=imageinfo&iiprop=url|extmetadata|mime|size&format=json`` (mediawiki.org API:Search,
API:Imageinfo, Extension:CommonsMetadata):
  * ``query.pages``: a list with ``formatversion=2`` (what the importer asks for), an object keyed
    by page id with formatversion=1; both are served. No ``query`` key at all when nothing matched.
  * per page: ``pageid``, ``ns`` (6), ``title`` ("File:..."), ``index`` (search rank counted from
    the first result, offset included — pages are NOT in rank order, so the importer sorts by
    it), ``imagerepository``.
  * paging (API:Continue): ``gsrlimit`` is at most 50 without the bot right; while there are more
    results the answer carries ``continue: {"gsroffset": N, "continue": "gsroffset||"}`` and no
    ``continue`` on the last batch.
  * ``thumburl`` (with ``iiurlwidth``): a rendition at most that wide (the original itself when
    narrower); a TIFF's rendition is a JPEG at another URL (``thumb=`` names its body here).
  * ``imageinfo[0]``: ``url`` (original file), ``descriptionurl`` (file page), ``mime``, ``size``,
    ``width``, ``height``, ``extmetadata`` with ``{"value", "source"[, "hidden"]}`` entries:
    ``LicenseShortName``, ``Artist`` (HTML), ``Credit`` (HTML), ``AttributionRequired``, ``LicenseUrl``.

Openverse — ``GET /v1/images/?q=...&page_size=N&page=P`` (api.openverse.org/v1 docs, ImageSerializer;
anonymous page_size is at most 20; pages past 20 — ``openverse_max_page`` — answer HTTP 400 with a
DRF ``{"detail": ...}`` body):
  * top level ``result_count``, ``page_count``, ``page_size``, ``page``, ``results``, ``warnings``.
  * per result: ``id``, ``title``, ``indexed_on``, ``foreign_landing_url``, ``url``, ``creator``,
    ``creator_url``, ``license`` (code, e.g. "by-sa"), ``license_version``, ``license_url``,
    ``provider``, ``source``, ``category``, ``filesize``, ``filetype``, ``tags``, ``attribution``,
    ``fields_matched``, ``mature``, ``height``, ``width``, ``thumbnail``, ``detail_url``,
    ``related_url``, ``unstable__sensitivity``. The importer uses url, foreign_landing_url,
    license, license_version, creator, attribution, title, mature.

Image host: ``/img/<name>`` serves registered bodies; a body can be scripted to answer with a
list of statuses first (e.g. 429 then 200), and every request is logged.

DuckDuckGo cannot be served from here (ddgs hard-codes its hosts): :class:`DDGReplay` stands in
for ``DDGS().images`` at the importer's source boundary, with ddgs' keywords, pages and errors.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from pipeline.importer.runner import ImportOptions


# -- server ---------------------------------------------------------------------------------
@dataclass
class Body:
    data: bytes
    content_type: str
    statuses: list = field(default_factory=list)   # served first, one per request (e.g. [429])
    delay: float = 0.0


class FakeWeb:
    def __init__(self, img_delay: float = 0.0):
        self.bodies: dict[str, Body] = {}
        self.wikimedia: dict[str, list[dict]] = {}   # query -> list of file specs
        self.openverse: dict[str, list[dict]] = {}
        self.openverse_max_page = 20                 # deepest page served to anonymous callers
        self.log: list[tuple[str, str, dict]] = []   # (path, query string, headers)
        self.img_delay = img_delay
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        self.server: Optional[ThreadingHTTPServer] = None
        self.ml_requests: list[tuple[str, dict]] = []   # fake ML backend: (path, JSON body)

    # registration -----------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def add_body(self, name: str, data: bytes, content_type: str, statuses=(), delay: float = 0.0) -> str:
        self.bodies[name] = Body(data, content_type, list(statuses), delay)
        return self.url(f"/img/{name}")

    def add_wikimedia(self, query: str, name: str, *, mime="image/jpeg", license="CC BY-SA 4.0",
                      artist='<a href="//commons.wikimedia.org/wiki/User:Example" title="User:Example">Example</a>',
                      width=160, height=120, size=None, thumb: Optional[str] = None):
        self.wikimedia.setdefault(query, []).append(dict(name=name, mime=mime, license=license, artist=artist,
                                                         width=width, height=height, size=size, thumb=thumb))

    def add_openverse(self, query: str, name: str, *, license="by", version="2.0", creator="Jane Doe",
                      filetype="jpg", mature=False):
        self.openverse.setdefault(query, []).append(dict(name=name, license=license, version=version,
                                                         creator=creator, filetype=filetype, mature=mature))

    def hits(self, name: str) -> int:
        return sum(1 for p, _, _ in self.log if p == f"/img/{name}")

    # responses --------------------------------------------------------------------------
    def wikimedia_response(self, qs: dict) -> dict:
        search = qs.get("gsrsearch", [""])[0]
        query = search.replace("filetype:bitmap", "").strip()
        limit = min(50, int(qs.get("gsrlimit", ["10"])[0]))
        offset = int(qs.get("gsroffset", ["0"])[0])
        matches = self.wikimedia.get(query, [])
        specs = matches[offset:offset + limit]
        if not specs:
            return {"batchcomplete": True if qs.get("formatversion") == ["2"] else ""}
        pages = []
        for rank, s in enumerate(specs, offset + 1):
            body = self.bodies.get(s["name"])
            title = f"File:{s['name']}"
            pages.append({
                "pageid": 100000 - rank,   # page ids in reverse rank order on purpose
                "ns": 6, "title": title, "index": rank, "imagerepository": "local",
                "imageinfo": [{
                    "size": s["size"] or (len(body.data) if body else 1234),
                    "width": s["width"], "height": s["height"],
                    "url": self.url(f"/img/{s['name']}"),
                    # with iiurlwidth: a rendition at most that wide; the original itself when narrower
                    **({"thumburl": self.url(f"/img/{s['thumb'] or s['name']}"), "thumbwidth": s["width"],
                        "thumbheight": s["height"]} if "iiurlwidth" in qs else {}),
                    "descriptionurl": f"https://commons.wikimedia.org/wiki/{title}",
                    "descriptionshorturl": f"https://commons.wikimedia.org/w/index.php?curid={100000 - rank}",
                    "mime": s["mime"],
                    "extmetadata": {
                        "DateTime": {"value": "2024-05-01 10:00:00", "source": "mediawiki-metadata", "hidden": ""},
                        "ObjectName": {"value": s["name"].rsplit(".", 1)[0], "source": "mediawiki-metadata"},
                        "Credit": {"value": "<span class=\"int-own-work\" lang=\"en\">Own work</span>",
                                   "source": "commons-desc-page", "hidden": ""},
                        "Artist": {"value": s["artist"], "source": "commons-desc-page"},
                        "LicenseShortName": {"value": s["license"], "source": "commons-desc-page", "hidden": ""},
                        "UsageTerms": {"value": f"Creative Commons {s['license']}", "source": "commons-desc-page",
                                       "hidden": ""},
                        "AttributionRequired": {"value": "true", "source": "commons-desc-page", "hidden": ""},
                        "LicenseUrl": {"value": "https://creativecommons.org/licenses/by-sa/4.0",
                                       "source": "commons-desc-page", "hidden": ""},
                        "Copyrighted": {"value": "True", "source": "commons-desc-page", "hidden": ""},
                        "License": {"value": "cc-by-sa-4.0", "source": "commons-templates", "hidden": ""},
                    },
                }],
            })
        pages.sort(key=lambda p: p["pageid"])
        out = {"batchcomplete": True}
        if offset + len(specs) < len(matches):
            out["continue"] = {"gsroffset": offset + len(specs), "continue": "gsroffset||"}
        if qs.get("formatversion") == ["2"]:
            out["query"] = {"pages": pages}
        else:
            out["batchcomplete"] = ""
            out["query"] = {"pages": {str(p["pageid"]): p for p in pages}}
        return out

    def openverse_response(self, qs: dict, headers) -> tuple[int, dict]:
        q = qs.get("q", [""])[0]
        page_size = int(qs.get("page_size", ["20"])[0])
        page = int(qs.get("page", ["1"])[0])
        if page > self.openverse_max_page and not headers.get("Authorization"):
            return 400, {"detail": f"Anonymous searches are limited to the first {self.openverse_max_page} pages "
                                   "of results."}
        specs = self.openverse.get(q, [])
        results = []
        for i, s in list(enumerate(specs))[(page - 1) * page_size:page * page_size]:
            ident = f"00000000-0000-4000-8000-{i:012d}"
            lic = s["license"]
            results.append({
                "id": ident, "title": s["name"].rsplit(".", 1)[0], "indexed_on": "2024-01-01T00:00:00Z",
                "foreign_landing_url": f"https://www.flickr.com/photos/example/{1000 + i}",
                "url": self.url(f"/img/{s['name']}"),
                "creator": s["creator"], "creator_url": "https://www.flickr.com/photos/example",
                "license": lic, "license_version": s["version"],
                "license_url": f"https://creativecommons.org/licenses/{lic}/{s['version']}/",
                "provider": "flickr", "source": "flickr", "category": "photograph", "filesize": None,
                "filetype": s["filetype"], "tags": [{"name": q, "accuracy": None, "unstable__provider": "flickr"}],
                "attribution": (f"\"{s['name']}\" by {s['creator']} is licensed under CC {lic.upper()} "
                                f"{s['version']}. To view a copy of this license, visit "
                                f"https://creativecommons.org/licenses/{lic}/{s['version']}/."),
                "fields_matched": ["title"], "mature": s["mature"], "height": 120, "width": 160,
                "thumbnail": f"https://api.openverse.org/v1/images/{ident}/thumb/",
                "detail_url": f"https://api.openverse.org/v1/images/{ident}/",
                "related_url": f"https://api.openverse.org/v1/images/{ident}/related/",
                "unstable__sensitivity": [],
            })
        return 200, {"result_count": len(specs), "page_count": -(-len(specs) // page_size), "page_size": page_size,
                     "page": page, "results": results, "warnings": []}

    def ml_response(self, path: str, body: dict) -> dict:
        """A minimal Label Studio ML backend (/health, /setup, /predict) answering one box per task."""
        if path == "/health":
            return {"status": "UP", "model_class": "FakeBackend"}
        if path == "/setup":
            return {"model_version": "fake-1"}
        if path == "/predict":
            box = {"from_name": "label", "to_name": "image", "type": "rectanglelabels",
                   "original_width": 160, "original_height": 120, "image_rotation": 0,
                   "value": {"x": 10, "y": 10, "width": 30, "height": 30, "rotation": 0,
                             "rectanglelabels": [self.ml_label]}}
            return {"results": [{"result": [box], "score": 0.9, "model_version": "fake-1"}
                                for _ in body.get("tasks", [])]}
        return {}

    ml_label = "stop sign"

    # lifecycle --------------------------------------------------------------------------
    def start(self) -> "FakeWeb":
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str, extra=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                parts = urlsplit(self.path)
                qs = parse_qs(parts.query)
                with web._lock:
                    web.log.append((parts.path, parts.query, dict(self.headers)))
                if parts.path == "/w/api.php":
                    return self._send(200, json.dumps(web.wikimedia_response(qs)).encode(),
                                      "application/json; charset=utf-8")
                if parts.path == "/v1/images/":
                    status, body = web.openverse_response(qs, self.headers)
                    return self._send(status, json.dumps(body).encode(), "application/json")
                if parts.path.startswith("/img/"):
                    body = web.bodies.get(parts.path[5:])
                    if body is None:
                        return self._send(404, b"<html>not found</html>", "text/html")
                    with web._lock:
                        web.inflight += 1
                        web.max_inflight = max(web.max_inflight, web.inflight)
                        status = body.statuses.pop(0) if body.statuses else 200
                    try:
                        time.sleep(body.delay or web.img_delay)
                        if status != 200:
                            return self._send(status, b"slow down", "text/plain", {"Retry-After": "0"})
                        return self._send(200, body.data, body.content_type)
                    finally:
                        with web._lock:
                            web.inflight -= 1
                if parts.path == "/health":
                    return self._send(200, json.dumps(web.ml_response("/health", {})).encode(), "application/json")
                return self._send(404, b"{}", "application/json")

            def do_POST(self):
                parts = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    body = {}
                with web._lock:
                    web.ml_requests.append((parts.path, body))
                self._send(200, json.dumps(web.ml_response(parts.path, body)).encode(), "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fakeweb").start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


class DDGReplay:
    """``DDGS().images`` for the DDG source: ``(query, *, max_results, page=1)`` -> ddgs' image
    dicts. Like ddgs with the duckduckgo engine: one engine page per call (``page_size`` results,
    100 on DuckDuckGo), truncated to ``max_results``; an empty page raises
    ``DDGSException("No results found.")``; ``fail`` maps a page number to the exception that
    page raises (e.g. a ``RatelimitException``). Every call is logged in ``calls``."""

    def __init__(self, rows: dict[str, list[dict]], page_size: int = 100, fail: Optional[dict] = None):
        self.rows, self.page_size, self.fail = rows, page_size, dict(fail or {})
        self.calls: list[tuple[str, int, int]] = []

    @staticmethod
    def row(image: str, n: int = 0) -> dict:
        return {"title": f"image {n}", "image": image, "thumbnail": f"https://tse.mm.bing.net/th?id=OIP.{n}",
                "url": f"https://example.org/page/{n}", "height": 120, "width": 160, "source": "Bing"}

    def __call__(self, query: str, *, max_results: int, page: int = 1) -> list[dict]:
        from ddgs.exceptions import DDGSException
        self.calls.append((query, max_results, page))
        if page in self.fail:
            raise self.fail[page]
        rows = self.rows.get(query, [])[(page - 1) * self.page_size:page * self.page_size]
        if not rows:
            raise DDGSException("No results found.")
        return rows[:max_results]


BUCKETS = {"positive/street": ["stop sign"], "negative/other": ["red circle"]}


def build_web(images, img_delay: float = 0.0) -> FakeWeb:
    w = FakeWeb(img_delay=img_delay).start()
    w.add_body("a.png", images["a_png"], "image/png")
    w.add_body("a-copy.png", images["a_png"], "image/png")             # same bytes, second URL
    w.add_body("a-third.png", images["a_png"], "image/png")            # same bytes, other bucket
    w.add_body("a-reencoded.jpg", images["a_jpg_reencoded"], "image/jpeg")  # perceptual duplicate
    w.add_body("b-rotated.jpg", images["b_rot"], "image/jpeg")
    w.add_body("c.png", images["c_png"], "image/png")
    w.add_body("flaky.jpg", images["d_jpg"], "image/jpeg", statuses=[429])  # 429, then 200
    w.add_body("page.html", b"<!doctype html><html><body>Not an image</body></html>", "text/html; charset=utf-8")
    w.add_body("truncated.jpg", images["truncated"], "image/jpeg")
    w.add_body("bomb.png", images["bomb"], "image/png")
    w.add_body("e.jpg", images["e_jpg"], "image/jpeg")
    w.add_body("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")

    w.add_wikimedia("stop sign", "a.png", mime="image/png")
    w.add_wikimedia("stop sign", "a-copy.png", mime="image/png")
    w.add_wikimedia("stop sign", "drawing.svg", mime="image/svg+xml")     # dropped by the source (mime)
    w.add_wikimedia("stop sign", "b-rotated.jpg")
    w.add_wikimedia("red circle", "c.png", mime="image/png", license="CC0", artist="Someone Else")

    w.add_openverse("stop sign", "a-reencoded.jpg")
    w.add_openverse("stop sign", "page.html")
    w.add_openverse("stop sign", "truncated.jpg")
    w.add_openverse("stop sign", "flaky.jpg", license="by-sa", version="4.0")
    w.add_openverse("stop sign", "mature.jpg", mature=True)               # dropped by the source
    w.add_openverse("red circle", "bomb.png", filetype="png")
    w.add_openverse("red circle", "a-third.png", filetype="png")
    w.add_openverse("red circle", "missing.jpg")                          # 404
    return w


def fast_opts(**kw) -> ImportOptions:
    base = dict(progress=False, per_host_interval=0.0, backoff=0.01, max_wait=0.05, retries=3,
                ddg_backoff=0.05, ddg_attempts=3, concurrency=4)
    base.update(kw)
    return ImportOptions(**base)
