"""Importer against a loopback replay of Wikimedia Commons + Openverse (tests/doubles/web.py,
which lists the documented response fields relied on) and a ddgs-shaped result source
injected at the DDG boundary (ddgs has no base-URL setting; see pipeline/importer/sources/ddg.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config import parse_project
from pipeline.importer.dedupe import hamming
from pipeline.importer.http import HostRateLimiter
from pipeline.importer.manifest import Manifest
from pipeline.importer.runner import run_import
from pipeline.importer.sources.base import SourceError
from pipeline.importer.sources.ddg import DDGSource
from tests import REPO
from tests.doubles.images import encode, pattern_image
from tests.doubles.web import BUCKETS, build_web, fast_opts
from tests.dying_writes import assert_died_of_a_full_disk, run_until_disk_full, stray_files


@pytest.fixture
def web(images, monkeypatch):
    w = build_web(images)
    # Configuration, not patching: the sources read their base URLs from these.
    monkeypatch.setenv("LF_WIKIMEDIA_API", w.url("/w/api.php"))
    monkeypatch.setenv("LF_OPENVERSE_API", w.url("/v1"))
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    yield w
    w.stop()


@pytest.fixture
def cfg(tmp_path):
    return parse_project({"project_name": "importer-test", "target_object": "stop sign",
                          "extra_labels": ["Traffic light"], "buckets": BUCKETS,
                          "data_root": str(tmp_path / "data")})


class RateLimitedDDG:
    """ddgs-shaped result source that is always rate-limited (what DDG does to scrapers)."""

    def __init__(self, exc=None):
        from ddgs.exceptions import RatelimitException
        self.exc = exc or RatelimitException("https://duckduckgo.com/i.js 403 Ratelimit")
        self.calls = []

    def __call__(self, query, *, max_results, page=1):
        self.calls.append((time.monotonic(), query))
        raise self.exc


def test_gather_download_dedupe_and_rerun(web, cfg):
    ddg = RateLimitedDDG()
    s = run_import(cfg, fast_opts(ddg_search=ddg))

    # DDG: backed off (0.05 s, then 0.1 s) between its 3 tries, then gave up; the others went on.
    assert len(ddg.calls) == 3 and {q for _, q in ddg.calls} == {"stop sign"}
    gaps = [b - a for (a, _), (b, _) in zip(ddg.calls, ddg.calls[1:])]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095
    st = s.sources["ddg"]
    assert st.gave_up and "rate-limited" in st.gave_up and st.skipped_queries == 2
    assert s.sources["wikimedia"].found == 4 and s.sources["openverse"].found == 7
    text = "\n".join(s.lines())
    assert "source ddg" in text and "gave up: rate-limited" in text
    assert any("ddg gave up" in w and "other sources went on" in w for w in s.warnings)

    # found 11: a, a-copy, b, c (wikimedia) + a-reencoded, page, truncated, flaky, bomb, a-third, missing
    assert s.found == 11
    assert s.downloaded == 4                       # a, b, flaky (d), c
    assert dict(s.duplicates) == {"identical bytes (sha256)": 2, "perceptual (pHash)": 1}
    assert dict(s.rejected) == {"not an image": 1, "truncated or corrupt": 1, "decompression bomb": 1,
                                "http error": 1}
    assert s.imported == 0 and "skipped" in s.label_studio
    assert dict(s.per_bucket) == {"positive/street": 3, "negative/other": 1}

    # 429 then 200: retried once.
    assert web.hits("flaky.jpg") == 2
    # The Wikimedia request is the documented generator=search + imageinfo query, with a User-Agent.
    path, qs, headers = next(x for x in web.log if x[0] == "/w/api.php")
    for part in ("generator=search", "gsrnamespace=6", "prop=imageinfo", "iiprop=url%7Cextmetadata%7Cmime%7Csize",
                 "iiurlwidth=2048", "formatversion=2"):
        assert part in qs
    assert "label-factory" in headers.get("User-Agent", "")
    assert any(p == "/v1/images/" and "q=stop+sign" in q for p, q, _ in web.log)

    m = Manifest.load(cfg.data_root)
    assert len(m) == 4
    by_url = {e["image_url"].rsplit("/", 1)[1]: e for e in m}
    assert set(by_url) == {"a.png", "b-rotated.jpg", "flaky.jpg", "c.png"}
    a = by_url["a.png"]
    assert a["source"] == "wikimedia" and a["bucket"] == "positive/street" and a["query"] == "stop sign"
    assert a["license"] == "CC BY-SA 4.0" and a["page_url"].endswith("/wiki/File:a.png")
    assert a["attribution"] == "Example, CC BY-SA 4.0 via Wikimedia Commons"   # HTML stripped
    aliases = {x["image_url"].rsplit("/", 1)[1]: x for x in a["aliases"]}
    assert set(aliases) == {"a-copy.png", "a-reencoded.jpg", "a-third.png"}
    assert aliases["a-reencoded.jpg"]["kind"] == "phash" and aliases["a-third.png"]["bucket"] == "negative/other"
    d = by_url["flaky.jpg"]
    assert d["source"] == "openverse" and d["license"] == "CC BY-SA 4.0"
    assert d["page_url"].startswith("https://www.flickr.com/") and "Jane Doe" in d["attribution"]
    assert by_url["c.png"]["bucket"] == "negative/other" and by_url["c.png"]["license"] == "CC0"
    for e in m:
        f = Path(cfg.data_root) / e["path"]
        assert f.is_file() and f.parent == Path(cfg.data_root) / e["bucket"]
    # EXIF orientation applied when saving: 120x60 with orientation 6 is stored upright as 60x120.
    with Image.open(Path(cfg.data_root) / by_url["b-rotated.jpg"]["path"]) as im:
        assert im.size == (60, 120) and im.getexif().get(0x0112, 1) == 1
    assert (by_url["b-rotated.jpg"]["width"], by_url["b-rotated.jpg"]["height"]) == (60, 120)

    # Second run: nothing new is downloaded or stored.
    files_before = sorted(p for p in Path(cfg.data_root).rglob("*") if p.is_file())
    img_hits_before = sum(1 for p, _, _ in web.log if p.startswith("/img/"))
    s2 = run_import(cfg, fast_opts(ddg_search=RateLimitedDDG()))
    assert s2.found == 11 and s2.downloaded == 0 and s2.known == 7
    assert dict(s2.rejected) == {"not an image": 1, "truncated or corrupt": 1, "decompression bomb": 1,
                                 "http error": 1}   # rejected URLs are tried again (could be transient)
    assert sorted(p for p in Path(cfg.data_root).rglob("*") if p.is_file()) == files_before
    assert sum(1 for p, _, _ in web.log if p.startswith("/img/")) - img_hits_before == 4
    assert len(Manifest.load(cfg.data_root)) == 4


def test_perceptual_duplicate_is_close_and_distinct_images_are_far(images):
    import imagehash

    from pipeline.images import open_image
    h = {k: str(imagehash.phash(open_image(images[k]))) for k in ("a_png", "a_jpg_reencoded", "c_png", "d_jpg")}
    assert hamming(h["a_png"], h["a_jpg_reencoded"]) <= 6
    assert min(hamming(h["a_png"], h["c_png"]), hamming(h["a_png"], h["d_jpg"]),
               hamming(h["c_png"], h["d_jpg"])) > 12


def test_dedupe_across_runs_by_content(web, cfg, images):
    """An image already stored comes back under a new URL in a later run: not stored again."""
    run_import(cfg, fast_opts(sources=["wikimedia"]))
    web.add_body("a-elsewhere.jpg", images["a_jpg_reencoded"], "image/jpeg")
    web.add_body("e.jpg", images["e_jpg"], "image/jpeg")
    web.add_openverse("red circle", "a-elsewhere.jpg")
    web.add_openverse("red circle", "e.jpg")
    s = run_import(cfg, fast_opts(sources=["openverse"]))
    assert s.downloaded == 1 + 1          # flaky (d) from "stop sign", e.jpg
    assert s.duplicates["perceptual (pHash)"] == 2   # a-reencoded + a-elsewhere match the stored a.png
    assert s.duplicates["identical bytes (sha256)"] == 1   # a-third.png
    assert len(Manifest.load(cfg.data_root)) == 4 + 1


def test_ddg_results_are_used_and_other_failure_modes(web, cfg):
    calls = []

    def ddg(query, *, max_results, page=1):   # ddgs DDGS().images() keywords and result shape
        calls.append((query, max_results, page))
        if query != "stop sign" or page > 1:
            return []
        return [{"title": "E", "image": web.url("/img/e.jpg"), "thumbnail": "https://tse.mm.bing.net/th?id=x",
                 "url": "https://example.org/e-page", "height": 120, "width": 160, "source": "Bing"},
                {"title": "bad", "image": "data:image/png;base64,AAAA", "url": "", "source": "Bing"}]

    s = run_import(cfg, fast_opts(ddg_search=ddg, sources=["ddg"], max_per_query=7))
    # page 2 of "stop sign" is empty: the end of its results
    assert calls == [("stop sign", 7, 1), ("stop sign", 7, 2), ("red circle", 7, 1)]
    assert s.sources["ddg"].gave_up is None
    assert s.found == 1 and s.downloaded == 1
    (e,) = list(Manifest.load(cfg.data_root))
    assert e["source"] == "ddg" and e["page_url"] == "https://example.org/e-page" and e["license"] == ""


def test_ddg_source_rate_limit_variants():
    from ddgs.exceptions import DDGSException, RatelimitException
    waits = []

    def src(exc_seq):
        seq = list(exc_seq)

        def fn(q, *, max_results, page=1):
            x = seq.pop(0) if seq else None
            if isinstance(x, Exception):
                raise x
            return x or []
        return DDGSource(search_fn=fn, backoff=1.0, attempts=3, empty_limit=3, sleep=waits.append)

    from pipeline.importer.sources.base import SourceGaveUp
    # recovers after one 429
    s = src([RatelimitException("429"), [{"image": "https://x/1.jpg", "url": "https://x"}]])
    assert len(s.search("q", "b", 5)) == 1 and waits == [1.0]
    # ddgs' engine errors that carry 403 count as rate limits too; exponential backoff, then give up
    waits.clear()
    s = src([DDGSException("https://duckduckgo.com/i.js 403 Forbidden")] * 3)
    with pytest.raises(SourceGaveUp, match="rate-limited"):
        s.search("q", "b", 5)
    assert waits == [1.0, 2.0]
    # newer ddgs swallows the status: 3 consecutive "No results found." → treated as a block
    s = src([DDGSException("No results found.")] * 3)
    assert s.search("q1", "b", 5) == [] and s.search("q2", "b", 5) == []
    with pytest.raises(SourceGaveUp, match="consecutive"):
        s.search("q3", "b", 5)


def test_dry_run_downloads_nothing(web, cfg):
    s = run_import(cfg, fast_opts(dry_run=True, sources=["wikimedia", "openverse"]))
    assert s.dry_run and s.found == 11 and s.downloaded == 0
    assert dict(s.per_bucket) == {"positive/street": 7, "negative/other": 4}   # new URLs per bucket
    assert not any(p.startswith("/img/") for p, _, _ in web.log)
    assert not Path(cfg.data_root).exists()
    assert "dry run" in s.lines()[0]


def test_size_cap_content_type_and_bounded_concurrency(images, cfg, monkeypatch):
    w = build_web(images, img_delay=0.15)
    try:
        monkeypatch.setenv("LF_WIKIMEDIA_API", w.url("/w/api.php"))
        monkeypatch.setenv("LF_OPENVERSE_API", w.url("/v1"))
        monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
        s = run_import(cfg, fast_opts(sources=["wikimedia", "openverse"], concurrency=2, max_bytes=2000))
        assert w.max_inflight <= 2
        # PNGs of blocky pictures are tiny; the JPEGs and the bomb are over 2000 bytes.
        assert s.rejected["too large"] >= 3
        assert s.rejected["not an image"] == 1
    finally:
        w.stop()


def test_host_rate_limiter_spaces_requests_per_host():
    lim = HostRateLimiter(0.05)
    t0 = time.monotonic()
    for _ in range(3):
        lim.wait("http://a.example/x")
    lim.wait("http://b.example/x")      # another host is not held back
    assert 0.1 <= time.monotonic() - t0 < 0.5


def test_cli_dry_run_json(web, cfg, tmp_path):
    import yaml
    p = tmp_path / "proj.yaml"
    p.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    env = {**os.environ, "LF_WIKIMEDIA_API": web.url("/w/api.php"), "LF_OPENVERSE_API": web.url("/v1"),
           "PYTHONPATH": str(REPO)}
    env.pop("LABEL_STUDIO_URL", None)
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "import", "--project", str(p), "--dry-run", "--json",
                        "--sources", "wikimedia,openverse", "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["found"] == 11 and out["downloaded"] == 0 and out["dry_run"] is True
    assert "found" in r.stderr and "wikimedia" in r.stderr      # the rich summary tables
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "import", "--project", str(p), "--dry-run",
                          "--sources", "bing"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert bad.returncode == 2 and "unknown source 'bing'" in bad.stderr


def test_openverse_pages_past_the_anonymous_page_size(web):
    from pipeline.importer.http import Http
    from pipeline.importer.sources.openverse import OpenverseSource
    for i in range(25):
        web.add_openverse("many", f"n{i}.jpg")
    src = OpenverseSource(Http())          # base URL from LF_OPENVERSE_API
    got = src.search("many", "b", 25)
    assert [c.image_url.rsplit("/", 1)[1] for c in got] == [f"n{i}.jpg" for i in range(25)]
    pages = [q for p, q, _ in web.log if p == "/v1/images/" and "q=many" in q]
    assert len(pages) == 2 and all("page_size=20" in q for q in pages)
    assert [c.license for c in got[:1]] == ["CC BY 2.0"] and got[0].attribution.startswith('"n0.jpg" by Jane Doe')


def test_unreachable_source_is_abandoned_and_the_others_go_on(web, tmp_path, monkeypatch):
    from pipeline.stack.processes import free_port
    monkeypatch.setenv("LF_WIKIMEDIA_API", f"http://127.0.0.1:{free_port()}/w/api.php")   # nothing listens
    cfg = parse_project({"project_name": "x", "target_object": "stop sign", "data_root": str(tmp_path / "d"),
                         "buckets": {"b": ["stop sign", "q2", "q3", "q4", "q5", "q6", "red circle"]}})
    s = run_import(cfg, fast_opts(sources=["wikimedia", "openverse"], dry_run=True))
    st = s.sources["wikimedia"]
    assert st.failed_queries == 5 and st.skipped_queries == 2 and "in a row failed" in st.gave_up
    assert s.sources["openverse"].found == 7 and s.sources["openverse"].gave_up is None


def test_downloader_gives_up_on_persistent_5xx_after_retries(web, images):
    from pipeline.importer.download import Downloader
    from pipeline.importer.http import Http
    from pipeline.importer.records import Candidate
    from pipeline.retry import RetryPolicy
    web.add_body("down.jpg", images["d_jpg"], "image/jpeg", statuses=[503] * 10)
    web.add_body("recovers.jpg", images["d_jpg"], "image/jpeg", statuses=[502, 500])
    dl = Downloader(Http(retry=RetryPolicy(attempts=3, backoff=0.01, max_wait=0.05)))
    bad = dl.fetch(Candidate("openverse", "b", "q", web.url("/img/down.jpg")))
    assert not bad.ok and bad.reason == "download failed" and "503" in bad.detail and web.hits("down.jpg") == 3
    good = dl.fetch(Candidate("openverse", "b", "q", web.url("/img/recovers.jpg")))
    assert good.ok and web.hits("recovers.jpg") == 3 and good.sha256 and len(good.phash) == 16


# -- paging -----------------------------------------------------------------------------------
def test_wikimedia_follows_continue_past_one_batch(web):
    from pipeline.importer.http import Http
    from pipeline.importer.sources.wikimedia import WikimediaSource
    for i in range(120):
        web.add_wikimedia("many", f"w{i}.jpg")
    got = WikimediaSource(Http()).search("many", "b", 110)
    assert [c.image_url.rsplit("/", 1)[1] for c in got] == [f"w{i}.jpg" for i in range(110)]
    assert [c.rank for c in got] == list(range(110))
    offsets = [dict(p.split("=", 1) for p in q.split("&")).get("gsroffset")
               for p_, q, _ in web.log if p_ == "/w/api.php"]
    assert offsets == [None, "50", "100"]           # the continue values sent back as they came
    # the end of the results (no continue) ends the query
    assert len(WikimediaSource(Http()).search("many", "b", 500)) == 120


def test_wikimedia_uses_a_tiffs_jpeg_rendition(web, images, cfg):
    from pipeline.importer.http import Http
    from pipeline.importer.sources.wikimedia import WikimediaSource
    web.add_body("scan.tif", encode(pattern_image(7), "TIFF"), "image/tiff")
    web.add_body("scan-2048px.jpg", images["e_jpg"], "image/jpeg")
    web.add_wikimedia("stop sign", "scan.tif", mime="image/tiff", thumb="scan-2048px.jpg")
    got = WikimediaSource(Http()).search("stop sign", "b", 10)
    assert [c.image_url.rsplit("/", 1)[1] for c in got] == ["a.png", "a-copy.png", "b-rotated.jpg",
                                                             "scan-2048px.jpg"]
    # without renditions (LF_WIKIMEDIA_THUMB_WIDTH=0) a TIFF cannot be used: skipped
    assert "scan.tif" not in {c.image_url.rsplit("/", 1)[1] for c in WikimediaSource(Http(), thumb_width=0)
                              .search("stop sign", "b", 10)}
    s = run_import(cfg, fast_opts(sources=["wikimedia"]))
    assert s.rejected == {} and web.hits("scan-2048px.jpg") == 1 and web.hits("scan.tif") == 0
    assert {e["image_url"].rsplit("/", 1)[1] for e in Manifest.load(cfg.data_root)} >= {"scan-2048px.jpg"}


def test_openverse_stops_at_the_page_cap_and_keeps_what_it_fetched(web, cfg):
    for i in range(450):
        web.add_openverse("deep", f"d{i}.jpg")
    cfg = parse_project({"project_name": "deep", "target_object": "x", "data_root": cfg.data_root,
                         "buckets": {"b": ["deep"]}})
    s = run_import(cfg, fast_opts(sources=["openverse"], dry_run=True, max_per_query=450))
    st = s.sources["openverse"]
    assert s.found == 400 and st.found == 400 and st.failed_queries == 0 and st.gave_up is None
    assert st.notes and "page cap" in st.notes[0] and "'deep'" in st.notes[0]
    pages = [q for p, q, _ in web.log if p == "/v1/images/" and "q=deep" in q]
    assert len(pages) == 20 and "page=21" not in " ".join(pages)   # no request the API would refuse
    assert any("note: 'deep'" in line for line in s.lines())


def test_openverse_http_400_past_page_one_keeps_the_earlier_pages(web):
    from pipeline.importer.http import Http
    from pipeline.importer.sources.openverse import OpenverseSource
    web.openverse_max_page = 3    # today's API stops anonymous searches sooner (240 works)
    for i in range(100):
        web.add_openverse("deep", f"d{i}.jpg")
    src = OpenverseSource(Http())
    got = src.search("deep", "b", 100)
    assert [c.image_url.rsplit("/", 1)[1] for c in got] == [f"d{i}.jpg" for i in range(60)]
    assert len(src.notes) == 1 and "HTTP 400" in src.notes[0] and "pages 1-3" in src.notes[0]
    web.openverse_max_page = 0
    with pytest.raises(SourceError, match="HTTP 400"):   # a 400 on page 1 is an error, not a cap
        src.search("deep", "b", 10)


def test_ddg_pages_through_results_up_to_max_per_query(web, cfg):
    from tests.doubles.web import DDGReplay
    rows = [DDGReplay.row(f"https://images.example/{i}.jpg", i) for i in range(250)]
    ddg = DDGReplay({"stop sign": rows + rows[:5]})          # page 3 repeats 5: counted once
    s = run_import(cfg, fast_opts(sources=["ddg"], ddg_search=ddg, dry_run=True, max_per_query=240))
    assert ddg.calls[:3] == [("stop sign", 240, 1), ("stop sign", 240, 2), ("stop sign", 240, 3)]
    assert s.found == 240 and s.sources["ddg"].gave_up is None
    s = run_import(cfg, fast_opts(sources=["ddg"], ddg_search=DDGReplay({"stop sign": rows}), dry_run=True,
                                  max_per_query=1000))
    assert s.found == 250       # page 4 says "No results found.": the end, not a rate limit
    assert s.sources["ddg"].gave_up is None and s.sources["ddg"].failed_queries == 0


def test_ddg_rate_limit_on_a_later_page_keeps_the_earlier_pages(web, cfg):
    from ddgs.exceptions import RatelimitException

    from tests.doubles.web import DDGReplay
    rows = [DDGReplay.row(f"https://images.example/{i}.jpg", i) for i in range(300)]
    ddg = DDGReplay({"stop sign": rows, "red circle": rows}, fail={2: RatelimitException("403 Ratelimit")})
    s = run_import(cfg, fast_opts(sources=["ddg"], ddg_search=ddg, dry_run=True, max_per_query=300))
    st = s.sources["ddg"]
    assert st.gave_up and "rate-limited" in st.gave_up and st.found == 100 and s.found == 100
    assert [c[2] for c in ddg.calls] == [1, 2, 2, 2]        # page 2 tried 3 times, then the source gave up
    assert st.skipped_queries == 2


# -- data_root and logging ---------------------------------------------------------------------
def test_data_root_with_tilde_is_under_home(web, tmp_path, monkeypatch):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    cfg = parse_project({"project_name": "t", "target_object": "stop sign", "data_root": "~/lf/stop-signs",
                         "buckets": {"positive/street": ["stop sign"]}})
    assert cfg.data_root == str(home / "lf" / "stop-signs")
    s = run_import(cfg, fast_opts(sources=["wikimedia"]))
    assert s.downloaded == 2 and len(Manifest.load(home / "lf" / "stop-signs")) == 2
    s = run_import(cfg, fast_opts(sources=["wikimedia"], data_root="~/other"))   # --data-root as well
    assert s.downloaded == 2 and (home / "other" / "manifest.jsonl").is_file()
    assert list(cwd.iterdir()) == []            # no literal "~" folder


def test_label_factory_import_verbose_flag_sets_the_log_level(web, cfg, tmp_path):
    import yaml
    p = tmp_path / "proj.yaml"
    p.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    env = {**os.environ, "LF_WIKIMEDIA_API": web.url("/w/api.php"), "PYTHONPATH": str(REPO)}
    env.pop("LABEL_STUDIO_URL", None)

    def stderr(*before, after=()):
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", *before, "import", "--project", str(p),
                            "--dry-run", "--sources", "wikimedia", "--no-progress", *after],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stderr

    per_query = "INFO pipeline.importer.gather: wikimedia: positive/street / 'stop sign': 3 candidates"
    assert " INFO " not in stderr()                          # default for import: warnings only
    assert per_query in stderr(after=["-v"])
    assert per_query in stderr("--log-level", "info")        # the global option works too
    assert " INFO " not in stderr("--log-level", "error", after=["-v"])   # an explicit level wins


def test_manifest_written_until_the_disk_is_full_keeps_the_previous_one(tmp_path):
    m = Manifest(tmp_path)
    m.add({"id": "a" * 16, "image_url": "http://127.0.0.1/a.jpg", "sha256": "a" * 64})
    m.save()
    before = (tmp_path / "manifest.jsonl").read_text()
    proc = run_until_disk_full(
        f"from pipeline.importer.manifest import Manifest\nm = Manifest.load({str(tmp_path)!r})\n"
        "for i in range(2000):\n"
        "    m.add({'id': f'{i:016d}', 'image_url': f'http://127.0.0.1/{i}.jpg', 'sha256': 'b' * 64})",
        "m.save()", limit=50_000)
    assert_died_of_a_full_disk(proc)
    assert (tmp_path / "manifest.jsonl").read_text() == before and len(Manifest.load(tmp_path)) == 1
    assert stray_files(tmp_path, {"manifest.jsonl"}) == []
