"""Session fixture ``label_studio``: a real Label Studio 1.23 on 127.0.0.1, started once per test session
by the same code as `label-factory up` (pipeline/stack/ls_server.py).

It runs from its own virtualenv (``.venv-ls``: its pins clash with ours; LABEL_STUDIO_BIN overrides the
``label-studio`` executable, as scripts/ls_compat.py does for older releases) with SQLite and media in a
temporary directory. The user and a legacy API token are created at start-up
(``--username/--password/--user-token``); ``--enable-legacy-api-token`` turns legacy tokens on for the
organization it creates (1.23 creates organizations with them off).

The yielded object has ``.url``, ``.token`` (legacy), ``.client()`` (``label_studio_sdk.LabelStudio``),
``.headers()``, ``.email``, ``.password``, ``.data_dir``, ``.files_dir`` (LOCAL_FILES_DOCUMENT_ROOT),
``.log_path``, ``.log_tail()`` and ``.personal_access_token()`` (creates a PAT: a JWT refresh token).

Module fixture ``label_studio_subpath``: another Label Studio 1.23, served under ``/ls`` as production serves
one behind a proxy: started with ``LABEL_STUDIO_HOST=http://127.0.0.1:<proxy port>/ls`` (its pages, API and
media URLs start with /ls) behind tests/doubles/subpath_proxy.py, which takes /ls off what it forwards and answers
404 for anything outside it. ``.url`` is the sub-path URL; ``.proxy`` the proxy (what it forwarded)."""
from __future__ import annotations

import pytest

from pipeline.stack.ls_server import label_studio_bin, start_label_studio
from pipeline.stack.processes import free_port
from tests.doubles.subpath_proxy import SubPathProxy


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    if label_studio_bin() is None:
        pytest.skip("Label Studio is not installed (scripts/setup.sh installs it into .venv-ls; "
                    "or set LABEL_STUDIO_BIN)")
    server = start_label_studio(tmp_path_factory.mktemp("label-studio"), port=None)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def label_studio_subpath(tmp_path_factory):
    if label_studio_bin() is None:
        pytest.skip("Label Studio is not installed (scripts/setup.sh installs it into .venv-ls; "
                    "or set LABEL_STUDIO_BIN)")
    port = free_port(None)
    proxy = SubPathProxy(port, "/ls")
    try:
        server = start_label_studio(tmp_path_factory.mktemp("label-studio-ls"), port=port, public_url=proxy.url)
        server.proxy = proxy
        try:
            yield server
        finally:
            server.stop()
    finally:
        proxy.stop()
