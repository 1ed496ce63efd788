"""The one place label-factory builds Label Studio SDK clients: credentials from the environment (URL +
API key: a legacy token or a personal access token), one client per (URL, key) per process.

A personal access token is a JWT *refresh* token: the SDK's token client exchanges it at
``/api/token/refresh/`` for a short-lived access token and refreshes that when it expires; a legacy
token is used as is. The base URL is given with a trailing slash, which keeps a Label Studio served under
a sub-path (the SDK joins the refresh URL to it). Tokens are never logged or put in error messages.
The ML backend contract (``backends.base``) is handed this module (``credentials.use``), so a served
model's ``get_label_studio_client`` is this one too.

Only this layer touches the SDK's private client wrapper: ``base_url``, ``auth_headers`` and ``http`` (the
SDK's authenticated HTTP client, with its token refresh and retries) below, ``client_token``, and the
requests ``pipeline.labelstudio.lsapi`` makes through ``http``; the rest of label-factory asks these."""
from __future__ import annotations

from typing import Optional

from pipeline.process_cache import ProcessCache
from pipeline.settings import LabelStudio

_clients: ProcessCache = ProcessCache("Label Studio clients")  # (URL, key, factory) -> SDK client; never logged


def label_studio_url() -> str:
    return LabelStudio.read().url  # LABEL_STUDIO_URL (or _HOST)


def label_studio_api_key() -> str:
    return LabelStudio.read().key  # LABEL_STUDIO_API_KEY (or _ACCESS_TOKEN)


def client(base_url: Optional[str] = None, api_key: Optional[str] = None, factory=None, key_required: bool = True,
           timeout: Optional[float] = None):
    """The process-wide SDK client for (URL, key, timeout); ``factory`` builds it (default ``LabelStudio``).

    Built once per (URL, key, timeout) and kept: it holds the personal access token's current access
    token and refreshes it, so a process exchanges its token once, not once per use. ``timeout``: seconds
    per request (None: the SDK's default). Raises ``PermissionError`` (reason, never the token) when it
    cannot be built, e.g. an expired personal access token. ``key_required=False`` (upstream's model
    base does this): with no key, the client is built from the URL alone and the SDK uses the key
    it read when it was imported, or refuses."""
    base_url = (base_url or label_studio_url()).rstrip("/")
    api_key = api_key or label_studio_api_key()
    if not base_url or (key_required and not api_key):
        raise PermissionError("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to reach Label Studio")
    if factory is None:
        from label_studio_sdk import LabelStudio as factory

    def build():
        # the trailing slash keeps a Label Studio under a sub-path: the SDK joins the
        # token refresh URL to it; the key is passed because the SDK reads
        # LABEL_STUDIO_API_KEY only once, when it is imported
        kwargs = {**({"api_key": api_key} if api_key else {}), **({"timeout": timeout} if timeout else {})}
        try:
            return factory(base_url=base_url + "/", **kwargs)
        except Exception as e:  # an expired PAT is refused already here
            raise PermissionError(f"LABEL_STUDIO_API_KEY is not usable: {_reason(e)}") from None
    return _clients.get((base_url, api_key, factory, timeout), build)


def base_url(sdk_client) -> str:
    """The Label Studio URL ``sdk_client`` talks to, sub-path included, without the trailing slash."""
    return sdk_client._client_wrapper.get_base_url().rstrip("/")


def auth_headers(sdk_client) -> dict:
    """The ``Authorization`` header ``sdk_client`` sends now (legacy ``Token``, or ``Bearer`` and a fresh access
    token for a personal access token), for a request the SDK has no method for (a multipart upload)."""
    headers = sdk_client._client_wrapper.get_headers()
    return {k: v for k, v in headers.items() if k.lower() == "authorization"}


def http(sdk_client):
    """The SDK's authenticated HTTP client (``.request(path, method=, params=)`` relative to ``base_url``, with
    its auth, token refresh and retries), for the Label Studio calls the SDK has no typed method for."""
    return sdk_client._client_wrapper.httpx_client


def client_token(sdk_client, base_url: str = "") -> str:
    """The token ``sdk_client`` sends now: the legacy token, or a fresh access token for a PAT."""
    try:
        return sdk_client._client_wrapper._tokens_client.api_key
    except Exception as e:
        raise PermissionError(f"cannot exchange the personal access token at {base_url}/api/token/refresh/: "
                              f"{_reason(e)}") from None


def access_token(base_url: Optional[str] = None, api_key: Optional[str] = None) -> str:
    """A token to send to Label Studio now: the legacy token, or a fresh access token for a PAT."""
    base_url = (base_url or label_studio_url()).rstrip("/")
    api_key = api_key or label_studio_api_key()
    if not api_key:
        return ""
    if not base_url:
        return api_key
    return client_token(client(base_url, api_key), base_url)


def is_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def auth_header(token: str) -> dict:
    """``Authorization`` header for Label Studio: Bearer for JWT access tokens, Token for legacy ones."""
    if not token:
        return {}
    return {"Authorization": ("Bearer " if is_jwt(token) else "Token ") + token}


def _reason(e: Exception) -> str:
    status = getattr(e, "status_code", None)
    body = getattr(e, "body", None)
    if status is not None:
        detail = body.get("detail") if isinstance(body, dict) else None
        return f"HTTP {status}" + (f": {detail}" if detail else "")
    return type(e).__name__
