"""pipeline/labelstudio/client.py: the one client factory, and every command's client coming from it
(tests/pipeline/labelstudio/test_subpath_labelstudio.py runs it against a real Label Studio under a sub-path)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from label_studio_sdk import LabelStudio

from pipeline.labelstudio import client as credentials

URL = "http://127.0.0.1:9/ls"  # nothing listens there: building a client sends nothing


@pytest.fixture(autouse=True)
def _no_label_studio_env(monkeypatch):
    for var in ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def test_one_client_per_url_key_and_timeout_with_the_sub_path_kept():
    built = []

    def factory(**kw):
        built.append(kw)
        return SimpleNamespace(**kw)

    a = credentials.client(URL, "legacy-1", factory=factory, timeout=30)
    assert credentials.client(URL + "/", "legacy-1", factory=factory, timeout=30) is a
    assert built == [{"base_url": URL + "/", "api_key": "legacy-1", "timeout": 30}]  # the slash keeps /ls
    assert credentials.client(URL, "legacy-1", factory=factory) is not a  # another timeout: another client
    assert built[1] == {"base_url": URL + "/", "api_key": "legacy-1"}  # none given: the SDK's own


def test_the_helpers_read_the_sdk_client_for_the_rest_of_label_factory():
    sdk = credentials.client(URL, "legacy-2", timeout=5)
    assert isinstance(sdk, LabelStudio) and credentials.base_url(sdk) == URL
    assert credentials.auth_headers(sdk) == {"Authorization": "Token legacy-2"}
    assert credentials.http(sdk) is sdk._client_wrapper.httpx_client  # what lsapi requests through


def test_the_commands_share_the_process_client(monkeypatch):
    """predict / evaluate / calibrate / export, import and the identify references use the process's client for a
    URL and key: one token exchange per process (before, identify built one per rebuild, the commands their own)."""
    from pipeline.importer.ls_project import LabelStudioTarget
    from pipeline.predict import cli as predict_cli
    from pipeline.references.fit import label_studio_client

    args = SimpleNamespace(label_studio_url=URL, api_key="legacy-3", ls_project=4)
    sdk, url, key, project = predict_cli.connect_project(args)
    assert (url, key, project) == (URL, "legacy-3", 4)
    assert sdk is credentials.client(URL, "legacy-3", timeout=predict_cli.TIMEOUT)
    assert LabelStudioTarget(URL, "legacy-3").client is sdk
    monkeypatch.setenv("LABEL_STUDIO_URL", URL)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "legacy-3")
    assert label_studio_client() is label_studio_client() is credentials.client()


def test_the_importer_reads_the_same_variables_as_the_rest(monkeypatch):
    """LABEL_STUDIO_HOST / LABEL_STUDIO_ACCESS_TOKEN (the names Label Studio's own ML backends use) reach Label
    Studio from the importer as from every other command (before, it knew only _URL and _API_KEY)."""
    from pipeline.importer.ls_project import LabelStudioError, LabelStudioTarget

    with pytest.raises(LabelStudioError, match="needs a URL and an API key"):
        LabelStudioTarget()
    monkeypatch.setenv("LABEL_STUDIO_HOST", URL + "/")
    monkeypatch.setenv("LABEL_STUDIO_ACCESS_TOKEN", "legacy-4")
    target = LabelStudioTarget()
    assert target.url == URL and credentials.auth_headers(target.client) == {"Authorization": "Token legacy-4"}


def test_an_expired_personal_access_token_is_a_clear_error_without_the_token():
    import jwt

    expired = jwt.encode({"exp": 1, "token_type": "refresh"}, "k" * 32, algorithm="HS256")
    with pytest.raises(PermissionError) as e:
        credentials.client(URL, expired)
    assert "HTTP 401" in str(e.value) and expired not in str(e.value)
    from pipeline.predict import cli as predict_cli
    from pipeline.predict.job import JobError
    with pytest.raises(JobError, match="not usable") as e:
        predict_cli.connect(SimpleNamespace(label_studio_url=URL, api_key=expired))
    assert expired not in str(e.value)
