"""Task image URL -> PIL image, fetched through the SDK with the Label Studio token, never from
a host that is not Label Studio's own or in ALLOWED_IMAGE_HOSTS (no SSRF into the backend's network).

What is resolved: uploaded files (``/data/upload/...``), local storage (``/data/local-files/?d=``),
cloud storage URIs (``s3://``, ``gs://``, ``azure-blob://`` via Label Studio's presign endpoint,
whose redirect to the bucket is followed because Label Studio issued it) and plain http(s) URLs.
Every request, redirects included, passes the host check; sizes and times are capped."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterable, Optional
from urllib.parse import urlparse

import requests
from PIL import Image

from backends.base import credentials
from pipeline.images import ImageLoadError, open_image

LS_RELATIVE_PREFIXES = ("/data/", "data/", "upload/", "/upload/", "/storage-data/")
CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
_SECRET_QUERY_HINTS = ("signature", "token", "sig=", "key=", "credential")


class ImageFetchError(RuntimeError):
    """The task's image could not be fetched; the message says which URL and why (no secrets)."""


class ImageRefused(ImageFetchError):
    """The URL points at a host the backend may not fetch from."""


def display_url(url: str) -> str:
    """The URL for logs and responses, with signed query strings cut off."""
    if "?" in url and any(h in url.split("?", 1)[1].lower() for h in _SECRET_QUERY_HINTS):
        return url.split("?", 1)[0] + "?…"
    return url


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.getenv(name, default))
    except ValueError:
        return default


class HostPolicy:
    """Hosts images may come from: Label Studio's host plus ALLOWED_IMAGE_HOSTS entries
    (``host``, ``host:port``, ``.example.com`` for any subdomain, or a full URL)."""

    def __init__(self, label_studio_url: str = "", allowed: Iterable[str] = ()):
        self.label_studio = self._parse(label_studio_url) if label_studio_url else None
        self.entries = [self._parse(a) for a in allowed if a.strip()]

    @classmethod
    def from_env(cls, label_studio_url: Optional[str] = None) -> "HostPolicy":
        """LABEL_STUDIO_URL (or the given Label Studio) plus ALLOWED_IMAGE_HOSTS."""
        return cls(label_studio_url or credentials.label_studio_url(),
                   (os.getenv("ALLOWED_IMAGE_HOSTS") or "").split(","))

    @staticmethod
    def _parse(entry: str) -> tuple[str, Optional[int]]:
        entry = entry.strip()
        if "://" not in entry:
            entry = "//" + entry
        p = urlparse(entry)
        port = p.port
        if port is None and p.scheme:
            port = {"http": 80, "https": 443}.get(p.scheme)
        host = (p.hostname or "").lower()
        if entry.startswith("//."):  # ".example.com": urlparse drops nothing, hostname keeps the dot
            host = "." + host.lstrip(".")
        return host, port

    @staticmethod
    def _host_port(url: str) -> tuple[str, Optional[int]]:
        p = urlparse(url)
        return (p.hostname or "").lower(), p.port or {"http": 80, "https": 443}.get(p.scheme)

    @staticmethod
    def _match(entry: tuple[str, Optional[int]], host: str, port: Optional[int]) -> bool:
        e_host, e_port = entry
        if e_port is not None and e_port != port:
            return False
        if e_host.startswith("."):
            return host.endswith(e_host) or host == e_host[1:]
        return host == e_host

    def is_label_studio(self, url: str) -> bool:
        return self.label_studio is not None and self._match(self.label_studio, *self._host_port(url))

    def allows(self, url: str) -> bool:
        if urlparse(url).scheme not in ("http", "https"):
            return False
        host, port = self._host_port(url)
        return self.is_label_studio(url) or any(self._match(e, host, port) for e in self.entries)


class GuardedSession(requests.Session):
    """A requests session that checks every request's host (redirect hops too), adds a timeout
    and refuses bodies over ``max_bytes`` (announced by Content-Length)."""

    def __init__(self, policy: HostPolicy, timeout: float, max_bytes: int):
        super().__init__()
        self.policy, self.timeout, self.max_bytes = policy, timeout, max_bytes
        self.trust_env = False  # no proxies / netrc credentials from the environment
        self._redirect_from_ls = False

    def rebuild_auth(self, prepared_request, response):
        super().rebuild_auth(prepared_request, response)  # drops Authorization when the host changes
        self._redirect_from_ls = self.policy.is_label_studio(response.url)

    def send(self, request, **kwargs):
        from_ls, self._redirect_from_ls = self._redirect_from_ls, False
        scheme_ok = urlparse(request.url).scheme in ("http", "https")
        if not scheme_ok or not (self.policy.allows(request.url) or from_ls):
            raise ImageRefused(f"{display_url(request.url)}: host is not Label Studio's and not in "
                               "ALLOWED_IMAGE_HOSTS; refusing to fetch it")
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        resp = super().send(request, **kwargs)
        size = resp.headers.get("Content-Length")
        if size and size.isdigit() and int(size) > self.max_bytes:
            resp.close()
            raise ImageFetchError(f"{display_url(request.url)}: {size} bytes exceeds MAX_IMAGE_BYTES={self.max_bytes}")
        return resp


def check_url(url, policy: HostPolicy) -> None:
    """Refuse what would never be fetched, before any network traffic."""
    if not isinstance(url, str) or not url.strip():
        raise ImageFetchError("task has no image URL")
    p = urlparse(url)
    if p.scheme in ("http", "https"):
        if not policy.allows(url):
            raise ImageRefused(f"{display_url(url)}: host {p.hostname!r} is not Label Studio's and not in "
                               "ALLOWED_IMAGE_HOSTS; refusing to fetch it")
    elif p.scheme in CLOUD_SCHEMES or url.startswith(LS_RELATIVE_PREFIXES):
        if policy.label_studio is None:
            raise ImageFetchError(f"{display_url(url)}: is served by Label Studio, but LABEL_STUDIO_URL is not set")
    else:
        raise ImageRefused(f"{display_url(url)}: unsupported image URL (expected http(s), a Label Studio "
                           "upload/local-files path or s3/gs/azure-blob)")


def fetch_image(url: str, task_id=None, policy: Optional[HostPolicy] = None, *,
                label_studio_url: Optional[str] = None, api_key: Optional[str] = None) -> Image.Image:
    """Download the image behind a task URL and decode it (EXIF orientation applied).

    ``label_studio_url`` / ``api_key``: the Label Studio to fetch from and its token (legacy or
    personal access token); default LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY."""
    from label_studio_sdk._extensions.label_studio_tools.core.utils.io import get_local_path, http_session
    ls_url = (label_studio_url or credentials.label_studio_url()).rstrip("/")
    policy = policy or HostPolicy.from_env(ls_url)
    check_url(url, policy)
    max_bytes = _int_env("MAX_IMAGE_BYTES", 50_000_000)
    session = GuardedSession(policy, float(os.getenv("IMAGE_FETCH_TIMEOUT", "30")), max_bytes)
    tmp = tempfile.mkdtemp(prefix="lf-image-")
    try:
        token = credentials.access_token(ls_url, api_key) if policy.label_studio else ""
        with http_session(session):
            # image_dir that does not exist: uploads are always fetched through Label Studio (which
            # checks permissions), never read from a local Label Studio data dir that happens to exist
            path = get_local_path(url, cache_dir=tmp, hostname=ls_url or None,
                                  access_token=token or None, task_id=task_id,
                                  image_dir=os.path.join(tmp, "no-local-uploads"))
        if os.path.getsize(path) > max_bytes:
            raise ImageFetchError(f"{display_url(url)}: file exceeds MAX_IMAGE_BYTES={max_bytes}")
        with open(path, "rb") as f:
            data = f.read()
    except ImageFetchError:
        raise
    except requests.HTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        where = display_url(e.request.url) if e.request else "?"
        raise ImageFetchError(f"{display_url(url)}: HTTP {status} from {where}") from None
    except requests.RequestException as e:
        raise ImageFetchError(f"{display_url(url)}: {type(e).__name__}: cannot download") from None
    except PermissionError as e:
        raise ImageFetchError(f"{display_url(url)}: {e}") from None
    except (OSError, ValueError) as e:
        raise ImageFetchError(f"{display_url(url)}: {e}") from None
    finally:
        session.close()
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        return open_image(data)
    except ImageLoadError as e:
        raise ImageLoadError(f"{display_url(url)}: {str(e).removeprefix('<bytes>: ')}") from None
