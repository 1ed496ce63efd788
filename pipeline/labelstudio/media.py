r"""Task image URL -> PIL image, downloaded only from Label Studio's media paths or explicitly allowed
hosts, with memory bounded by ``MAX_IMAGE_BYTES`` and time bounded by ``IMAGE_FETCH_TIMEOUT``.

What is resolved: uploaded files (``/data/upload/...``, fetched there directly; only a 404 or 5xx
tries Label Studio's storage proxy ``/storage-data/uploaded/?filepath=``, which serves them when its
default storage is a bucket), local storage (``/data/local-files/?d=``, always through Label Studio, which checks
access), cloud storage URIs (``s3://``, ``gs://``, ``azure-blob://`` via ``/tasks/<id>/presign/``,
whose redirect to the bucket is followed because Label Studio issued it), already resolved
``/tasks|projects/<id>/resolve|presign/`` URLs, and plain http(s) URLs.

Guards, on every request including each redirect hop:

* one reading of the URL: an http(s) URL whose authority holds ``\``, ``@`` (userinfo), ``%``
  (escapes, IPv6 zone ids), whitespace, control or non-ASCII characters is refused on every hop,
  Label Studio's redirects included (those are how one URL names two hosts to two parsers), and the
  host is read with the HTTP client's own parser (``connect_target``) and must equal ``urlsplit``'s;
* host: Label Studio's own or one in ``ALLOWED_IMAGE_HOSTS`` (or the target of a redirect Label
  Studio issued); anything else is refused before a byte is sent (no SSRF into the backend's network);
* the connection itself: each connection checks, before it connects and before it sends, that it goes
  to the host:port the hop was allowed for, and sends an ``Authorization`` header only to Label
  Studio's host:port, whatever the layers above decided;
* on Label Studio's host only media paths are requested, and the backend's token goes only there:
  the path is percent-decoded until stable, any ``.``/``..`` segment, backslash or NUL is refused,
  so ``/data/upload/1/../../api/...`` (or ``%2e%2e``) never reaches Label Studio's API. A Label Studio
  served under a sub-path (LABEL_STUDIO_URL ``http://host/ls``: its LABEL_STUDIO_HOST) has its media
  under it: ``/ls/data/upload/...``, which it also writes into the tasks it imports; the media paths
  are checked below the sub-path, and nothing outside it is fetched from that host;
* size: the body is streamed and reading stops at ``MAX_IMAGE_BYTES`` whatever Content-Length says
  (or does not say), so memory stays bounded by the cap;
* time: ``IMAGE_FETCH_TIMEOUT`` is a total deadline per image (connect, headers, body, redirects),
  cut to the request's deadline (``pipeline.deadline``) when that ends sooner; a watchdog shuts the
  socket when it expires, so a server dripping one byte at a time cannot hold the thread longer.

Decoding is ``pipeline.images``' (``fetch_photo``: at the project's working resolution); not here:
which model runs on the image."""
from __future__ import annotations

import base64
import contextvars
import re
import socket
import threading
import time
from typing import Iterable, Optional
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

import requests
import urllib3
from PIL import Image
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pipeline import deadline
from pipeline.images import ImageLoadError, Photo, open_photo
from pipeline.labelstudio import client as credentials
from pipeline.settings import Images, Video

LS_RELATIVE_PREFIXES = ("/data/", "data/", "upload/", "/upload/", "/storage-data/", "storage-data/",
                        "/tasks/", "/projects/")
CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
MAX_REDIRECTS = 5
CHUNK = 64 * 1024
# Label Studio paths that serve media; everything else on its host (the API above all) is refused
MEDIA_PATH = re.compile(r"^/(?:data/upload/[^/].*|data/local-files/?|storage-data/uploaded/?"
                        r"|(?:tasks|projects)/\d+/(?:presign|resolve)/?)$")
_PATH_PARAMS = ("d", "filepath")  # query parameters that name a file under a root
_SECRET_QUERY_HINTS = ("signature", "token", "sig=", "key=", "credential")
# characters that let one URL name two hosts to two parsers, refused in an http(s) authority
_AMBIGUOUS_AUTHORITY = re.compile(r"[\\@%\s\x00-\x1f\x7f]|[^\x00-\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DEFAULT_PORTS = {"http": 80, "https": 443}


class ImageFetchError(RuntimeError):
    """The task's image could not be fetched; the message says which URL and why (no secrets)."""


class ImageRefused(ImageFetchError):
    """The URL points at a host (or a Label Studio path) the backend may not fetch from."""


def display_url(url: str) -> str:
    """The URL for logs and responses, with signed query strings cut off."""
    if "?" in url and any(h in url.split("?", 1)[1].lower() for h in _SECRET_QUERY_HINTS):
        return url.split("?", 1)[0] + "?…"
    return url


def connect_target(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` the HTTP client connects to for an http(s) ``url``, read with the client's
    own parser (requests' ``prepare_url``, then urllib3's ``parse_url``), or ``ImageRefused`` when the
    URL is ambiguous: control characters anywhere, or an authority holding ``\\``, ``@``, ``%``,
    whitespace or non-ASCII characters, or a host that ``urlsplit`` reads differently."""
    shown = display_url(url)
    if _CONTROL.search(url):
        raise ImageRefused(f"{shown!r}: control characters in the URL; refusing to fetch it")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    rest = url.split(":", 1)[1] if ":" in url else ""
    if scheme not in DEFAULT_PORTS or not rest.startswith("//"):
        raise ImageRefused(f"{shown}: not an http(s) URL with a host; refusing to fetch it")
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    bad = _AMBIGUOUS_AUTHORITY.search(authority)
    if bad:
        raise ImageRefused(f"{shown!r}: its host part holds {bad.group()!r} (backslash, userinfo '@', percent-escape, "
                           "whitespace or non-ASCII), which HTTP clients and URL parsers read differently; "
                           "refusing to fetch it")
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
        target = urllib3.util.parse_url(prepared.url)
        split_host, split_port = (parts.hostname or "").lower().rstrip("."), parts.port
    except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError) as e:
        raise ImageRefused(f"{shown}: not a valid URL ({type(e).__name__}); refusing to fetch it") from None
    host = (target.host or "").lower().strip("[]").rstrip(".")
    port = target.port or DEFAULT_PORTS[scheme]
    if not host or host != split_host or port != (split_port or DEFAULT_PORTS[scheme]):
        raise ImageRefused(f"{shown}: the URL names two different hosts to two parsers; refusing to fetch it")
    return scheme, host, port


class HostPolicy:
    """Hosts images may come from: Label Studio's host plus ALLOWED_IMAGE_HOSTS entries
    (``host``, ``host:port``, ``.example.com`` for any subdomain, or a full URL)."""

    def __init__(self, label_studio_url: str = "", allowed: Iterable[str] = ()):
        self.label_studio = self._parse(label_studio_url) if label_studio_url else None
        self.base_path = base_path(label_studio_url)  # "/ls" for a Label Studio under a sub-path, else ""
        self.entries = [self._parse(a) for a in allowed if a.strip()]

    @classmethod
    def from_env(cls, label_studio_url: Optional[str] = None) -> "HostPolicy":
        """LABEL_STUDIO_URL (or the given Label Studio) plus ALLOWED_IMAGE_HOSTS."""
        return cls(label_studio_url or credentials.label_studio_url(), Images.read().allowed_hosts)

    @staticmethod
    def _parse(entry: str) -> tuple[str, Optional[int]]:
        entry = entry.strip()
        if "://" not in entry:
            entry = "//" + entry
        p = urlsplit(entry)
        port = p.port
        if port is None and p.scheme:
            port = DEFAULT_PORTS.get(p.scheme)
        host = (p.hostname or "").lower()
        if entry.startswith("//."):  # ".example.com": the hostname keeps the dot
            host = "." + host.lstrip(".")
        return host, port

    @staticmethod
    def _host_port(url: str) -> tuple[str, int]:
        return connect_target(url)[1:]

    @staticmethod
    def _match(entry: tuple[str, Optional[int]], host: str, port: Optional[int]) -> bool:
        e_host, e_port = entry
        if e_port is not None and e_port != port:
            return False
        if e_host.startswith("."):
            return host.endswith(e_host) or host == e_host[1:]
        return host == e_host

    def is_label_studio(self, url: str) -> bool:
        """Whether ``url`` connects to Label Studio's host:port (``ImageRefused`` for an ambiguous URL)."""
        return self.label_studio is not None and self._match(self.label_studio, *self._host_port(url))

    def is_label_studio_target(self, host: str, port: int) -> bool:
        """Whether a connection to ``host:port`` is one to Label Studio."""
        return self.label_studio is not None and self._match(self.label_studio, host.lower().rstrip("."), port)

    def allows(self, url: str) -> bool:
        """Whether ``url`` may be fetched (``ImageRefused`` for an ambiguous URL)."""
        if urlsplit(url).scheme.lower() not in DEFAULT_PORTS:
            return False
        host, port = self._host_port(url)
        return self.is_label_studio(url) or any(self._match(e, host, port) for e in self.entries)


# -- Label Studio media paths ---------------------------------------------------------------------
def base_path(label_studio_url: str) -> str:
    """The sub-path Label Studio is served under (``http://host/ls`` -> ``/ls``), "" at the root."""
    return urlsplit(label_studio_url or "").path.rstrip("/")


def _below(path: str, base: str) -> Optional[str]:
    """``path`` without Label Studio's sub-path ``base`` (None: not under it)."""
    if not base:
        return path
    return path[len(base):] if path.startswith(base + "/") else None


def _decoded(text: str) -> Optional[str]:
    """``text`` percent-decoded until it stops changing (None: still changing after 4 rounds)."""
    for _ in range(4):
        nxt = unquote(text)
        if nxt == text:
            return text
        text = nxt
    return None


def _traversal(text: str) -> bool:
    decoded = _decoded(text)
    if decoded is None or "\\" in decoded or "\x00" in decoded:
        return True
    return any(seg in (".", "..") for seg in decoded.split("/"))


def media_path_problem(url: str, base: str = "") -> Optional[str]:
    """Why ``url`` (on Label Studio's host, served under ``base``) is not a media path, or None when it is one."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if _traversal(path) or "//" in (_decoded(path) or "//"):
        return "path has '.' or '..' segments (percent-encoded or not), backslashes or empty segments"
    inside = _below(_decoded(path), base)
    if inside is None:
        return f"not under Label Studio's path {base}"
    if not MEDIA_PATH.match(inside):
        return "not a Label Studio media path (/data/upload/, /data/local-files/, /storage-data/uploaded/, " \
               "/tasks/<id>/presign/)"
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _PATH_PARAMS and (_traversal(value) or value.startswith("/")):
            return f"query parameter {key!r} leaves its root"
    return None


def _relative_to_label_studio(url: str, base: str = "") -> str:
    """A Label Studio relative media URL with its canonical leading path (``upload/x`` -> ``/data/upload/x``),
    below the sub-path ``base`` (``/ls/data/upload/x`` -> ``/data/upload/x``)."""
    path = url if url.startswith("/") else "/" + url
    if base and path.startswith(base + "/") and path[len(base):].startswith(LS_RELATIVE_PREFIXES):
        path = path[len(base):]
    if path.startswith("/upload/"):
        path = "/data" + path
    return path


def locate(url: str, task_id, ls_url: str) -> list[str]:
    """Absolute URLs to try for a task URL, in order (several only for uploads: see the module doc)."""
    p = urlsplit(url)
    if p.scheme in ("http", "https"):
        return [url]
    if p.scheme in CLOUD_SCHEMES:
        try:
            tid = int(task_id)
        except (TypeError, ValueError):
            raise ImageFetchError(f"{display_url(url)}: a cloud storage URI needs the task id to be presigned "
                                  "by Label Studio") from None
        return [f"{ls_url}/tasks/{tid}/presign/?fileuri={base64.urlsafe_b64encode(url.encode()).decode()}"]
    path = _relative_to_label_studio(url, base_path(ls_url))
    if path.startswith("/data/upload/"):
        proxy = "/storage-data/uploaded/?filepath=" + path[len("/data/"):]
        return [ls_url + path, ls_url + proxy]
    return [ls_url + path]


def check_url(url, policy: HostPolicy) -> None:
    """Refuse what would never be fetched, before any network traffic."""
    if not isinstance(url, str) or not url.strip():
        raise ImageFetchError("task has no image URL")
    p = urlsplit(url)
    relative = not p.scheme and not url.startswith("//")
    if p.scheme in DEFAULT_PORTS:
        if not policy.allows(url):
            raise ImageRefused(f"{display_url(url)}: host {connect_target(url)[1]!r} is not Label Studio's and not "
                               "in ALLOWED_IMAGE_HOSTS; refusing to fetch it")
        if policy.is_label_studio(url):
            _check_media(url, policy.base_path)
    elif p.scheme in CLOUD_SCHEMES or (relative and _relative_to_label_studio(url, policy.base_path).startswith(
            LS_RELATIVE_PREFIXES)):
        if policy.label_studio is None:
            raise ImageFetchError(f"{display_url(url)}: is served by Label Studio, but LABEL_STUDIO_URL is not set")
        if not p.scheme:
            _check_media("http://label-studio" + _relative_to_label_studio(url, policy.base_path))
    else:
        raise ImageRefused(f"{display_url(url)}: unsupported image URL (expected http(s), a Label Studio "
                           "upload/local-files path or s3/gs/azure-blob)")


def _check_media(url: str, base: str = "") -> None:
    problem = media_path_problem(url, base)
    if problem:
        raise ImageRefused(f"{display_url(url)}: on Label Studio's host only media is fetched: {problem}; "
                           "refusing to fetch it")


# -- the time limit: a watchdog that shuts the sockets of one download -----------------------------
class _Watchdog:
    """Shuts every socket the download opened once its time is up (wakes a read blocked on a drip)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self.fire)
        self._timer.daemon = True

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.fired:
                _shut(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._socks:
                _shut(sock)


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_current: contextvars.ContextVar[Optional["Download"]] = contextvars.ContextVar("lf_image_download", default=None)


class _Guarded:
    """Connection mixin, the last word on where bytes go: a connection of a running download connects
    only to the host:port its hop was allowed for, sends ``Authorization`` only to Label Studio's, and
    its socket goes to the download's watchdog."""

    def connect(self):
        download = _current.get()
        if download is not None:
            download.check_connection(self.host, self.port, {})
        super().connect()
        if download is not None:
            download.dog.watch(self.sock)

    def request(self, method, url, body=None, headers=None, **kwargs):
        download = _current.get()
        if download is not None:
            download.check_connection(self.host, self.port, headers or {})
        return super().request(method, url, body=body, headers=headers, **kwargs)


class _GuardedHTTPConnection(_Guarded, urllib3.connection.HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guarded, urllib3.connection.HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


# -- the download ------------------------------------------------------------------------------------
class Download:
    """One image's bytes: every hop checked, the body streamed up to ``max_bytes``, all within ``seconds``."""

    def __init__(self, policy: HostPolicy, token: str, max_bytes: int, seconds: float, limit_name: str,
                 sink=None, cap_name: str = "MAX_IMAGE_BYTES"):
        self.policy, self.token, self.max_bytes = policy, token, max_bytes
        self.sink, self.cap_name = sink, cap_name  # sink: a binary file the body is written to, not kept
        self.seconds, self.limit_name = seconds, limit_name
        self.bytes_read = 0
        self.dog = _Watchdog(seconds)
        self.hop: Optional[tuple[str, int]] = None  # the host:port the current request may connect to
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies / netrc credentials from the environment
        self.session.verify = Images.read().verify_ssl
        adapter = _GuardedAdapter(max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def fetch(self, candidates: list[str], original: str) -> bytes:
        """The first candidate that answers; the next one is tried only after a 404 or 5xx."""
        dog = self.dog
        token = _current.set(self)
        t0 = time.monotonic()
        failed: list[requests.Response] = []
        try:
            with dog:
                for url in candidates:
                    try:
                        return self._get(url, dog)
                    except requests.HTTPError as e:
                        if e.response is None:
                            raise
                        failed.append(e.response)
                        if e.response.status_code != 404 and e.response.status_code < 500:
                            break
            answers = ", then ".join(f"HTTP {r.status_code} from {display_url(r.url or '?')}" for r in failed)
            raise ImageFetchError(f"{display_url(original)}: {answers}")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            if dog.fired:
                raise self._too_slow(original, t0) from None
            raise ImageFetchError(f"{display_url(original)}: {type(e).__name__}: cannot download") from None
        finally:
            _current.reset(token)
            self.session.close()

    def _too_slow(self, url: str, t0: float) -> ImageFetchError:
        return ImageFetchError(f"{display_url(url)}: not downloaded within {self.limit_name} "
                               f"({self.bytes_read} bytes in {time.monotonic() - t0:.1f} s)")

    def check_connection(self, host: str, port: int, headers) -> None:
        """Called by every connection of this download before it connects and before it sends."""
        target = (host.lower().rstrip("."), port)
        if target != self.hop:
            raise ImageRefused(f"a connection to {host}:{port} is not the host the URL names; refusing it")
        if any(k.lower() == "authorization" for k in headers) and not self.policy.is_label_studio_target(*target):
            raise ImageRefused(f"the Label Studio token may only go to Label Studio, not {host}:{port}; refusing it")

    def _get(self, url: str, dog: _Watchdog) -> bytes:
        issued_by_ls = False
        for _ in range(MAX_REDIRECTS + 1):
            self._check_hop(url, issued_by_ls)
            self.hop = connect_target(url)[1:]
            headers = {"Accept-Encoding": "identity"}
            if self.policy.is_label_studio(url):
                headers.update(credentials.auth_header(self.token))
            timeout = max(0.01, self.seconds)
            resp = self.session.get(url, headers=headers, stream=True, allow_redirects=False,
                                    timeout=(timeout, timeout))
            try:
                if resp.is_redirect and resp.headers.get("Location"):
                    location = resp.headers["Location"]
                    if _CONTROL.search(location):  # urljoin would drop them and read another URL
                        raise ImageRefused(f"{display_url(url)}: redirected to {location!r}, with control "
                                           "characters; refusing to follow it")
                    issued_by_ls = self.policy.is_label_studio(url)
                    url = urljoin(url, location)
                    continue
                resp.raise_for_status()
                return self._body(resp, url, dog)
            finally:
                resp.close()
        raise ImageFetchError(f"{display_url(url)}: more than {MAX_REDIRECTS} redirects")

    def _check_hop(self, url: str, issued_by_ls: bool) -> None:
        if urlsplit(url).scheme not in DEFAULT_PORTS:
            raise ImageRefused(f"{display_url(url)}: not http(s); refusing to fetch it")
        connect_target(url)  # one reading of the URL on every hop, Label Studio's redirects included
        if self.policy.is_label_studio(url):
            _check_media(url, self.policy.base_path)
        elif not (issued_by_ls or self.policy.allows(url)):
            raise ImageRefused(f"{display_url(url)}: host is not Label Studio's and not in "
                               "ALLOWED_IMAGE_HOSTS; refusing to fetch it")

    def _body(self, resp: requests.Response, url: str, dog: _Watchdog) -> bytes:
        size = resp.headers.get("Content-Length")
        if size and size.isdigit() and int(size) > self.max_bytes:
            raise ImageFetchError(f"{display_url(url)}: {size} bytes exceeds {self.cap_name}={self.max_bytes}")
        buf, n = bytearray(), 0
        if self.sink is not None:
            self.sink.seek(0)
            self.sink.truncate()
        while chunk := resp.raw.read1(CHUNK):  # what has arrived, so a timeout can say how much
            n += len(chunk)
            self.bytes_read += len(chunk)
            if n > self.max_bytes:
                raise ImageFetchError(f"{display_url(url)}: more than {self.cap_name}={self.max_bytes} bytes; "
                                      "stopped reading")
            if self.sink is not None:
                self.sink.write(chunk)
            else:
                buf += chunk
        if dog.fired:  # the watchdog ended a body without a length: what was read is not the image
            raise requests.ConnectionError("deadline")
        return bytes(buf)


def fetch_bytes(url: str, task_id=None, policy: Optional[HostPolicy] = None, *,
                label_studio_url: Optional[str] = None, api_key: Optional[str] = None, sink=None,
                max_bytes: Optional[int] = None, cap_name: str = "MAX_IMAGE_BYTES",
                timeout: Optional[float] = None, timeout_name: str = "IMAGE_FETCH_TIMEOUT") -> bytes:
    """The bytes behind a task URL, under the guards of this module's docstring. With ``sink`` (a binary
    file) the body is written there instead, at most ``max_bytes`` (a video: ``fetch_file``)."""
    ls_url = (label_studio_url or credentials.label_studio_url()).rstrip("/")
    policy = policy or HostPolicy.from_env(ls_url)
    check_url(url, policy)
    candidates = locate(url, task_id, ls_url)
    limits = Images.read()
    seconds = limits.fetch_timeout if timeout is None else timeout
    name = f"{timeout_name}={seconds:g} s"
    left, d = deadline.remaining(), deadline.current()
    if left is not None and left < seconds:
        if left <= 0:
            raise deadline.DeadlineExceeded(f"{d.describe()} ran out before the image was downloaded")
        seconds, name = left, d.describe()
    needs_token = any(policy.is_label_studio(c) for c in candidates)
    try:
        token = credentials.access_token(ls_url, api_key) if needs_token else ""
    except PermissionError as e:
        raise ImageFetchError(f"{display_url(url)}: {e}") from None
    cap = limits.max_bytes if max_bytes is None else max_bytes
    return Download(policy, token, cap, seconds, name, sink, cap_name).fetch(candidates, url)


def fetch_file(url: str, dest, task_id=None, policy: Optional[HostPolicy] = None, *, max_bytes: int,
               label_studio_url: Optional[str] = None, api_key: Optional[str] = None):
    """The file behind a task URL (a video) written to ``dest``, under the same guards as an image: Label
    Studio or ALLOWED_IMAGE_HOSTS only, at most ``max_bytes`` (VIDEO_MAX_BYTES), within VIDEO_FETCH_TIMEOUT
    (cut to the request's deadline). Memory stays at one chunk whatever the size."""
    with open(dest, "wb") as sink:
        fetch_bytes(url, task_id, policy, label_studio_url=label_studio_url, api_key=api_key, sink=sink,
                    max_bytes=max_bytes, cap_name="VIDEO_MAX_BYTES", timeout=Video.read().fetch_timeout,
                    timeout_name="VIDEO_FETCH_TIMEOUT")
    return dest


def fetch_photo(url: str, task_id=None, policy: Optional[HostPolicy] = None, *,
                working_pixels: Optional[int] = None, label_studio_url: Optional[str] = None,
                api_key: Optional[str] = None) -> Photo:
    """Download the image behind a task URL and decode it at ``working_pixels`` (``open_photo``: a big
    JPEG is decoded straight at 1/2, 1/4 or 1/8, so its full-size pixels are never held; the Photo keeps
    the original's size for coordinates). None: full resolution. The bomb limit is checked on the header
    before decoding; EXIF orientation is applied.

    ``label_studio_url`` / ``api_key``: the Label Studio to fetch from and its token (legacy or
    personal access token); default LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY."""
    data = fetch_bytes(url, task_id, policy, label_studio_url=label_studio_url, api_key=api_key)
    try:
        return open_photo(data, working_pixels)
    except ImageLoadError as e:
        raise ImageLoadError(f"{display_url(url)}: {str(e).removeprefix('<bytes>: ')}") from None


def fetch_image(url: str, task_id=None, policy: Optional[HostPolicy] = None, *,
                label_studio_url: Optional[str] = None, api_key: Optional[str] = None) -> Image.Image:
    """``fetch_photo`` at full resolution, as a PIL image (for callers that keep or crop the pixels as they
    are: identify references, training sets, calibration)."""
    return fetch_photo(url, task_id, policy, label_studio_url=label_studio_url, api_key=api_key).pixels
