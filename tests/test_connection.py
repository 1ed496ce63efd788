"""backends/connection.py: the Label Studio options, client and project lookup shared by predict and evaluate."""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from backends import connection


def _client(projects):
    return SimpleNamespace(projects=SimpleNamespace(list=lambda **kw: [SimpleNamespace(id=i, title=t)
                                                                        for i, t in projects]))


def test_find_project_by_title():
    client = _client([(7, "job-signs"), (8, "other")])
    assert connection.find_project_id(client, "job-signs") == 7
    with pytest.raises(connection.ConnectError, match="no Label Studio project titled 'nope'"):
        connection.find_project_id(client, "nope")
    with pytest.raises(connection.ConnectError, match=r"ids 3, 4\): pass --ls-project"):
        connection.find_project_id(_client([(3, "t"), (4, "t")]), "t")


def test_connect_needs_url_and_key_and_reads_the_environment(monkeypatch):
    for k in ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    p = argparse.ArgumentParser()
    connection.add_arguments(p)
    with pytest.raises(connection.ConnectError, match="needs a URL and an API key"):
        connection.connect(p.parse_args([]))
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "legacy-token")
    conn = connection.connect(p.parse_args([]))
    assert conn.url == "http://127.0.0.1:9" and "legacy-token" not in repr(conn)
    conn = connection.connect(p.parse_args(["--label-studio-url", "http://127.0.0.1:8/", "--ls-project", "5"]))
    assert conn.url == "http://127.0.0.1:8" and conn.project_id(5, "ignored") == 5
