"""Label Studio credentials for the contract: LABEL_STUDIO_URL (or _HOST) and LABEL_STUDIO_API_KEY (or
_ACCESS_TOKEN), read by ``backends.base.settings``, and the SDK client a model's ``get_label_studio_client``
returns.

An application that has its own Label Studio connection hands it over with ``use(connection)`` (an
object with ``label_studio_url``, ``label_studio_api_key``, ``client`` and ``client_token`` as below):
from then on this module builds nothing, so the process has one client per (URL, key). Without one (an
upstream ``model.py`` served on its own) it builds the client itself, as upstream does. It imports no
application code. Tokens are never logged or put in error messages."""
from __future__ import annotations

import threading

from backends.base import settings

_connection = None  # the application's Label Studio connection (``use``), or None
_clients: dict = {}  # (URL, key, factory) -> SDK client, when no connection was handed over
_lock = threading.Lock()


def use(connection) -> None:
    """Serve ``label_studio_url``, ``label_studio_api_key``, ``client`` and ``client_token`` from
    ``connection`` (a module or object with those functions)."""
    global _connection
    _connection = connection


def label_studio_url() -> str:
    if _connection is not None:
        return _connection.label_studio_url()
    return settings.current().label_studio_url


def label_studio_api_key() -> str:
    if _connection is not None:
        return _connection.label_studio_api_key()
    return settings.current().label_studio_api_key


def client(factory, key_required: bool = True):
    """The process-wide SDK client built by ``factory`` (``LabelStudio``) for the URL and key; with
    ``key_required=False``, from the URL alone when no key is set (as upstream). ``PermissionError``
    (the reason, never the token) when it cannot be built."""
    if _connection is not None:
        return _connection.client(factory=factory, key_required=key_required)
    url, key = label_studio_url(), label_studio_api_key()
    if not url or (key_required and not key):
        raise PermissionError("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to reach Label Studio")
    with _lock:
        if (url, key, factory) not in _clients:
            try:  # the trailing slash keeps a sub-path when the SDK joins its token-refresh URL
                _clients[url, key, factory] = factory(base_url=url + "/", **({"api_key": key} if key else {}))
            except Exception as e:  # an expired personal access token is refused already here
                raise PermissionError(f"LABEL_STUDIO_API_KEY is not usable: {type(e).__name__}") from None
        return _clients[url, key, factory]


def client_token(sdk_client) -> str:
    """The token ``sdk_client`` sends now: the legacy token, or a fresh access token for a PAT."""
    if _connection is not None:
        return _connection.client_token(sdk_client, label_studio_url())
    try:
        return sdk_client._client_wrapper._tokens_client.api_key
    except Exception as e:
        raise PermissionError(f"cannot exchange the personal access token at {label_studio_url()}/api/token/refresh/: "
                              f"{type(e).__name__}") from None
