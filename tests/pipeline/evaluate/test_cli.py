"""`label-factory evaluate` argument checks and connection failures (no Label Studio running)."""
from __future__ import annotations

import socket

from pipeline import cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_label_studio_is_a_clear_error(tmp_path, capsys, monkeypatch):
    for k in ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    url = f"http://127.0.0.1:{_closed_port()}"
    assert cli.main(["evaluate", "--ls-project", "3", "--label-studio-url", url, "--api-key", "secret-token",
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach Label Studio at {url}" in err and "secret-token" not in err
    assert not (tmp_path / "report.json").exists()
    assert cli.main(["evaluate", "--ls-project", "3", "--out", str(tmp_path)]) == 2
    assert "needs a URL and an API key" in capsys.readouterr().err


def test_bad_arguments(tmp_path, capsys):
    base = ["evaluate", "--ls-project", "1", "--label-studio-url", "http://127.0.0.1:9", "--api-key", "k"]
    for extra, message in [(["--iou", "0"], "0 < --iou"), (["--suspect-score", "2"], "scores in [0, 1]"),
                           (["--bins", "0"], "at least 1"), (["--keep-iou", "1.5"], "--keep-iou <= 1")]:
        assert cli.main(base + extra) == 2
        assert message in capsys.readouterr().err
