"""Session fixture ``label_studio``: a real Label Studio 1.23 on 127.0.0.1, started once per test session
by the same code as `label-factory up` (pipeline/stack/ls_server.py).

It runs from its own virtualenv (``.venv-ls``: its pins clash with ours; LABEL_STUDIO_BIN overrides the
``label-studio`` executable) with SQLite and media in a temporary directory. The user and a legacy API
token are created at start-up (``--username/--password/--user-token``); ``--enable-legacy-api-token``
turns legacy tokens on for the organization it creates (1.23 creates organizations with them off).

The yielded object has ``.url``, ``.token`` (legacy), ``.client()`` (``label_studio_sdk.LabelStudio``),
``.headers()``, ``.email``, ``.password``, ``.data_dir``, ``.files_dir`` (LOCAL_FILES_DOCUMENT_ROOT),
``.log_path``, ``.log_tail()`` and ``.personal_access_token()`` (creates a PAT: a JWT refresh token)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.stack.ls_server import label_studio_bin, start_label_studio

REPO = Path(__file__).resolve().parents[1]


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
