"""pipeline/labelstudio/media.py against loopback servers: memory bounded by MAX_IMAGE_BYTES whatever the body
(no Content-Length, endless), IMAGE_FETCH_TIMEOUT a total deadline (a server dripping bytes cannot
hold the thread), and on Label Studio's host only media paths are ever requested."""
from __future__ import annotations

import re
import time
import tracemalloc

import pytest

from pipeline import deadline
from pipeline.labelstudio.media import HostPolicy, ImageFetchError, ImageRefused, fetch_image
from tests.doubles.images import jpeg_bytes
from tests.doubles.servers import FileServer, RawServer, drip_body, drip_headers, endless_chunked
from tests.doubles.urls import SPELLINGS

TOKEN = "feedc0ffee0123456789abcdef0123456789abcd"


@pytest.fixture
def raw_server():
    servers = []

    def make(handler):
        servers.append(RawServer(handler))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def _allowing(server) -> HostPolicy:
    return HostPolicy("", [server.url])


def test_endless_body_without_length_stops_at_the_cap(raw_server, monkeypatch):
    cap = 2_000_000
    monkeypatch.setenv("MAX_IMAGE_BYTES", str(cap))
    server = raw_server(endless_chunked)
    tracemalloc.start()
    try:
        with pytest.raises(ImageFetchError, match="MAX_IMAGE_BYTES=2000000"):
            fetch_image(server.url + "/huge.jpg", policy=_allowing(server))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert server.done.wait(10), "the download did not hang up"
    assert peak < 2.5 * cap, f"peak {peak} bytes allocated for a {cap}-byte cap"
    # the client stopped reading: what the server got out is the cap plus the sockets' buffers, not 100 MB
    assert server.sent < 40_000_000, server.sent


@pytest.mark.parametrize("drip", [drip_body, drip_headers], ids=["body", "headers"])
def test_dripping_server_fails_by_the_deadline(raw_server, monkeypatch, drip):
    monkeypatch.setenv("IMAGE_FETCH_TIMEOUT", "1")
    server = raw_server(drip)
    t0 = time.monotonic()
    with pytest.raises(ImageFetchError, match=r"not downloaded within IMAGE_FETCH_TIMEOUT=1 s"):
        fetch_image(server.url + "/slow.jpg", policy=_allowing(server))
    assert time.monotonic() - t0 < 8  # 1 s plus slack on a busy machine; the server drips for 20 s
    assert server.done.wait(5), "the connection was not closed"


def test_the_request_deadline_cuts_the_download_short(raw_server, monkeypatch):
    monkeypatch.setenv("IMAGE_FETCH_TIMEOUT", "30")
    server = raw_server(drip_body)
    with deadline.within(0.5, "PREDICT_DEADLINE"), \
            pytest.raises(ImageFetchError, match=r"the request's 0.5 s deadline \(PREDICT_DEADLINE\)"):
        fetch_image(server.url + "/slow.jpg", policy=_allowing(server))


# -- Label Studio's host: media paths only -----------------------------------------------------
@pytest.fixture
def ls():
    """A Label Studio-shaped loopback server: uploads, and an API that must never be called."""
    s = FileServer()
    s.files["/data/upload/1/a.jpg"] = jpeg_bytes((40, 30))
    s.files["/api/current-user/whoami"] = (200, {"Content-Type": "application/json"}, b'{"email": "admin@x"}')
    s.files["/data/upload/1/hop.jpg"] = (302, {"Location": "/api/current-user/whoami"}, b"")
    yield s
    s.close()


def _fetch(url, ls, policy=None, task_id=None):
    return fetch_image(url, task_id, policy, label_studio_url=ls.url, api_key=TOKEN)


HOSTILE = [
    "/data/upload/1/../../../api/current-user/whoami",
    "/data/upload/1/%2e%2e/%2e%2e/%2e%2e/api/current-user/whoami",
    "/data/upload/1/%2E%2E/%2e%2E/api/current-user/whoami",
    "/data/upload/1/%252e%252e/%252e%252e/api/current-user/whoami",
    "/data/upload/1/..%2f..%2f..%2fapi/current-user/whoami",
    "/data/upload/1/..%5c..%5capi/current-user/whoami",
    "/data/upload/1/./../../api/current-user/whoami",
    "upload/../../api/current-user/whoami",
    "/tasks/1/../../api/current-user/whoami",
    "/data/local-files/?d=../../etc/passwd",
    "/data/local-files/?d=%2e%2e/%2e%2e/etc/passwd",
    "/storage-data/uploaded/?filepath=upload/../../api/current-user/whoami",
    "/api/current-user/whoami",
    "{ls}/api/current-user/whoami",
    "{ls}/data/upload/../api/current-user/whoami",
    "{ls}/data/upload/1/%2e%2e/%2e%2e/api/current-user/whoami",
    "//{host}/api/current-user/whoami",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_label_studio_api_is_never_requested(ls, url):
    url = url.format(ls=ls.url, host=ls.url.split("//", 1)[1])
    with pytest.raises(ImageRefused):
        _fetch(url, ls)
    assert ls.requests == []


def test_redirects_are_held_to_media_paths_too(ls):
    other = FileServer()
    try:
        other.files["/x.jpg"] = (302, {"Location": ls.url + "/api/current-user/whoami"}, b"")
        policy = HostPolicy(ls.url, [other.url])
        with pytest.raises(ImageRefused, match="only media"):
            _fetch(other.url + "/x.jpg", ls, policy)  # an allowed host bouncing us to Label Studio's API
        with pytest.raises(ImageRefused, match="only media"):
            _fetch("/data/upload/1/hop.jpg", ls)  # Label Studio (or what poses as it) redirecting to its API
    finally:
        other.close()
    assert [r["path"] for r in ls.requests] == ["/data/upload/1/hop.jpg"]


def test_uploads_are_fetched_from_data_upload_first_with_the_token(ls):
    im = _fetch("/data/upload/1/a.jpg", ls)
    assert im.size == (40, 30)
    assert ls.requests == [{"path": "/data/upload/1/a.jpg", "authorization": f"Token {TOKEN}"}]


def test_upload_falls_back_to_the_storage_proxy_on_404(ls):
    """Label Studio with a bucket as default storage serves uploads only through /storage-data/uploaded/."""
    body = jpeg_bytes((20, 10))

    def proxy_only(handler):
        ok = handler.path.startswith("/storage-data/uploaded/?filepath=upload/1/b.jpg")
        handler.send_response(200 if ok else 404)
        handler.send_header("Content-Length", str(len(body) if ok else 0))
        handler.end_headers()
        if ok:
            handler.wfile.write(body)

    ls.files["/data/upload/1/b.jpg"] = proxy_only
    assert _fetch("upload/1/b.jpg", ls).size == (20, 10)
    assert [r["path"] for r in ls.requests] == ["/data/upload/1/b.jpg",
                                                "/storage-data/uploaded/?filepath=upload/1/b.jpg"]
    with pytest.raises(ImageFetchError, match=r"HTTP 404 from .*/data/upload/1/gone.jpg"):
        _fetch("/data/upload/1/gone.jpg", ls)


def test_cloud_uri_is_presigned_by_label_studio_and_its_redirect_followed(ls):
    bucket = FileServer()
    try:
        bucket.files["/bucket/c.jpg"] = jpeg_bytes((12, 8))

        def presign(handler):
            handler.send_response(303)
            handler.send_header("Location", bucket.url + "/bucket/c.jpg?X-Amz-Signature=abc")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        ls.files["/tasks/7/presign/"] = presign
        assert _fetch("s3://bucket/c.jpg", ls, task_id=7).size == (12, 8)
        assert bucket.requests[0]["authorization"] is None  # the token stays with Label Studio
        assert ls.requests[0]["path"].startswith("/tasks/7/presign/?fileuri=")
    finally:
        bucket.close()


@pytest.fixture
def hosts():
    """(Label Studio stand-in, an allowed host, the canary, a format function for SPELLINGS)."""
    from tests.doubles.servers import Canary

    ls_server, allowed, canary = FileServer(), FileServer(), Canary()
    ls_server.files["/data/upload/2/x.jpg"] = jpeg_bytes((16, 12))
    allowed.files["/x.jpg"] = jpeg_bytes((16, 12))

    def spell(template: str) -> str:
        return template.format(c=canary.netloc, cp=canary.port, ls=ls_server.url.split("//")[1],
                               a=allowed.url.split("//")[1])
    yield ls_server, allowed, canary, spell
    for s in (ls_server, allowed, canary):
        s.close()


def _policy(ls_server, allowed) -> HostPolicy:
    return HostPolicy(ls_server.url, [allowed.url])


def _canary_untouched(canary):
    time.sleep(0.1)  # a connection in flight would be accepted by now
    assert canary.received == [], f"{len(canary.received)} connection(s) reached 127.0.0.2"
    assert canary.tokens() == []


@pytest.mark.parametrize("template", SPELLINGS, ids=range(len(SPELLINGS)))
def test_no_spelling_of_a_url_reaches_a_host_that_is_not_allowed(hosts, template):
    ls_server, allowed, canary, spell = hosts
    with pytest.raises(ImageFetchError):
        _fetch(spell(template), ls_server, _policy(ls_server, allowed))
    _canary_untouched(canary)
    assert ls_server.requests == [] and allowed.requests == []  # refused before anything was sent


@pytest.mark.parametrize("template", SPELLINGS, ids=range(len(SPELLINGS)))
def test_no_redirect_from_an_allowed_host_reaches_a_host_that_is_not_allowed(hosts, template):
    ls_server, allowed, canary, spell = hosts
    allowed.files["/hop.jpg"] = (302, {"Location": spell(template)}, b"")
    with pytest.raises(ImageFetchError):
        _fetch(allowed.url + "/hop.jpg", ls_server, _policy(ls_server, allowed))
    _canary_untouched(canary)
    assert allowed.requests and all(r["authorization"] is None for r in allowed.requests)


# the spellings whose host part is ambiguous (and that a Location header can carry: no CR/LF)
AMBIGUOUS = [t for t in SPELLINGS if "\n" not in t
             and re.search(r"[\\@%\t\x00 ]", re.split(r"[/?#]", t.split("//", 1)[-1], maxsplit=1)[0])]


@pytest.mark.parametrize("template", AMBIGUOUS, ids=range(len(AMBIGUOUS)))
def test_label_studios_own_redirects_are_held_to_one_reading_too(hosts, template):
    """Label Studio's redirects (a presigned bucket URL) may go to any host, but never to an ambiguous
    URL, and never with the token."""
    ls_server, allowed, canary, spell = hosts
    ls_server.files["/data/upload/2/hop.jpg"] = (302, {"Location": spell(template)}, b"")
    with pytest.raises(ImageRefused):
        _fetch("/data/upload/2/hop.jpg", ls_server, _policy(ls_server, allowed))
    _canary_untouched(canary)


def test_the_connection_itself_refuses_a_host_the_url_check_did_not_allow(hosts, monkeypatch):
    """The last line: even if the URL checks above were fooled, a connection goes only to the host:port
    its hop was allowed for, and the token only to Label Studio's."""
    from pipeline.labelstudio import media as images

    ls_server, allowed, canary, spell = hosts
    real = images.connect_target
    monkeypatch.setattr(images, "connect_target", lambda url: real(url.replace(canary.netloc, ls_server.url[7:])))
    monkeypatch.setattr(HostPolicy, "_host_port", staticmethod(lambda url: images.connect_target(url)[1:]))
    with pytest.raises(ImageRefused, match="not the host the URL names"):
        _fetch(f"http://{canary.netloc}/data/upload/2/x.jpg", ls_server, _policy(ls_server, allowed))
    _canary_untouched(canary)


def test_a_plain_url_on_an_allowed_host_still_works_without_the_token(hosts):
    ls_server, allowed, canary, spell = hosts
    assert _fetch(allowed.url.upper().replace("HTTP", "http", 1) + "/x.jpg", ls_server,
                  _policy(ls_server, allowed)).size == (16, 12)
    assert _fetch(spell("http://{ls}/data/upload/2/x.jpg"), ls_server, _policy(ls_server, allowed)).size == (16, 12)
    assert allowed.requests[0]["authorization"] is None
    assert ls_server.requests[0]["authorization"] == f"Token {TOKEN}"


def _drip_with_length(conn, server):
    """A Content-Length of 100 kB, then 1 kB every 0.1 s."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(100):
        server.send(conn, b"\xff" * 1000)
        time.sleep(0.1)


def test_a_timeout_says_how_many_bytes_had_arrived(raw_server, monkeypatch):
    monkeypatch.setenv("IMAGE_FETCH_TIMEOUT", "1.5")
    server = raw_server(_drip_with_length)
    with pytest.raises(ImageFetchError) as e:
        fetch_image(server.url + "/slow.jpg", policy=_allowing(server))
    got = int(str(e.value).split("(", 1)[1].split(" bytes")[0])
    assert 5_000 <= got < 100_000, str(e.value)
