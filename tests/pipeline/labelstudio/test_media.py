"""pipeline/labelstudio/media.py with a Label Studio served under a sub-path (LABEL_STUDIO_URL http://host/ls):
its media are under /ls, its imported tasks name them with /ls, and nothing outside /ls is fetched from it
(tests/pipeline/labelstudio/test_subpath_labelstudio.py fetches them from a real one)."""
from __future__ import annotations

import pytest

from pipeline.labelstudio.media import HostPolicy, ImageRefused, check_url, fetch_bytes, locate
from tests.doubles.images import jpeg_bytes
from tests.doubles.servers import FileServer


@pytest.fixture()
def server():
    s = FileServer()
    yield s
    s.close()


def test_media_paths_are_read_below_the_sub_path():
    ls = "http://127.0.0.1:8080/ls"
    policy = HostPolicy(ls)
    assert policy.base_path == "/ls" and HostPolicy("http://127.0.0.1:8080/").base_path == ""
    for url in ("/ls/data/upload/3/a.png", "/data/upload/3/a.png", "upload/3/a.png"):
        check_url(url, policy)
        assert locate(url, 1, ls)[0] == ls + "/data/upload/3/a.png"
    check_url(ls + "/data/upload/3/a.png", policy)
    check_url(ls + "/data/local-files/?d=photos/a.png", policy)
    for url, why in (("http://127.0.0.1:8080/data/upload/3/a.png", "not under Label Studio's path /ls"),
                     (ls + "/api/projects", "not a Label Studio media path"),
                     ("/ls/api/projects", "unsupported image URL"),
                     ("/ls/data/upload/3/../../../api/projects", "'..' segments"),
                     ("/ls/data/upload/3/%2e%2e/%2e%2e/%2e%2e/api/projects", "'..' segments")):
        with pytest.raises(ImageRefused, match=why):
            check_url(url, policy)
    with pytest.raises(ImageRefused, match="unsupported image URL"):  # at the root, /ls is no media path
        check_url("/ls/data/upload/3/a.png", HostPolicy("http://127.0.0.1:8080"))


def test_a_task_image_is_fetched_under_the_sub_path_with_the_token(server):
    """Before, every media URL of a Label Studio under a sub-path was refused: the paths were checked from the
    host's root (/ls/data/upload/... is no /data/upload/...)."""
    body = jpeg_bytes()
    server.files["/ls/data/upload/3/a.jpg"] = body
    ls = server.url + "/ls"
    for url in ("/ls/data/upload/3/a.jpg", "/data/upload/3/a.jpg", ls + "/data/upload/3/a.jpg"):
        assert fetch_bytes(url, 1, label_studio_url=ls, api_key="legacy-token") == body
    assert {r["path"] for r in server.requests} == {"/ls/data/upload/3/a.jpg"}
    assert {r["authorization"] for r in server.requests} == {"Token legacy-token"}


def test_a_task_video_is_written_to_a_file_under_its_own_limits(server, tmp_path, monkeypatch):
    import time

    from pipeline.labelstudio.media import ImageFetchError, fetch_file

    body = bytes(range(256)) * 4000  # ~1 MB: several chunks
    server.files["/data/upload/3/v.mp4"] = body

    def slow(handler):  # a byte every 0.1 s: never a read timeout, past VIDEO_FETCH_TIMEOUT in all
        handler.send_response(200)
        handler.end_headers()
        try:
            for _ in range(30):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            pass
    server.files["/data/upload/3/slow.mp4"] = slow
    ls = server.url
    dest = tmp_path / "video"
    assert fetch_file("/data/upload/3/v.mp4", dest, 1, max_bytes=len(body), label_studio_url=ls,
                      api_key="legacy-token") == dest
    assert dest.read_bytes() == body
    with pytest.raises(ImageFetchError, match=f"exceeds VIDEO_MAX_BYTES={len(body) - 1}"):
        fetch_file("/data/upload/3/v.mp4", dest, 1, max_bytes=len(body) - 1, label_studio_url=ls, api_key="k")
    monkeypatch.setenv("VIDEO_FETCH_TIMEOUT", "0.5")
    monkeypatch.setenv("IMAGE_FETCH_TIMEOUT", "60")
    with pytest.raises(ImageFetchError, match=r"not downloaded within VIDEO_FETCH_TIMEOUT=0.5 s"):
        fetch_file("/data/upload/3/slow.mp4", dest, 1, max_bytes=len(body), label_studio_url=ls, api_key="k")
