"""Session fixture ``label_studio``: a real Label Studio 1.23 on 127.0.0.1, started once per test session.

It runs from its own virtualenv (``.venv-ls``: its pins clash with ours; LABEL_STUDIO_BIN overrides the
``label-studio`` executable) with SQLite and media in a temporary directory. The user and a legacy API
token are created at start-up (``--username/--password/--user-token``); ``--enable-legacy-api-token``
turns legacy tokens on for the organization it creates (1.23 creates organizations with them off).

The yielded object has ``.url``, ``.token`` (legacy), ``.client()`` (``label_studio_sdk.LabelStudio``),
plus ``.email``, ``.password``, ``.data_dir``, ``.files_dir`` (LOCAL_FILES_DOCUMENT_ROOT), ``.log_path``
and ``.personal_access_token()`` (creates a PAT: a JWT refresh token)."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BIN = REPO / ".venv-ls" / "bin" / "label-studio"
START_TIMEOUT = float(os.getenv("LABEL_STUDIO_START_TIMEOUT", "240"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabelStudioServer:
    url: str
    token: str
    email: str
    password: str
    data_dir: Path
    files_dir: Path
    log_path: Path

    def client(self):
        from label_studio_sdk import LabelStudio
        return LabelStudio(base_url=self.url, api_key=self.token)

    def headers(self) -> dict:
        return {"Authorization": f"Token {self.token}"}

    def personal_access_token(self) -> str:
        """A new personal access token (JWT refresh token) for the same user."""
        r = requests.post(f"{self.url}/api/token/", headers=self.headers(), timeout=30)
        r.raise_for_status()
        return r.json()["token"]

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _env(data_dir: Path, files_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_dir),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        # ML backends and test servers run on 127.0.0.1: 1.23 blocks local addresses by default,
        # both when an ML backend URL is saved (SSRF_PROTECTION_ENABLED) and when it is called
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LATEST_VERSION_CHECK": "false",  # no pypi.org call at start-up
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "DEBUG": "false",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    binary = Path(os.getenv("LABEL_STUDIO_BIN") or DEFAULT_BIN)
    if not binary.exists():
        pytest.skip(f"Label Studio is not installed at {binary} (scripts/setup.sh installs it into .venv-ls; "
                    "or set LABEL_STUDIO_BIN)")
    root = tmp_path_factory.mktemp("label-studio")
    data_dir, files_dir = root / "data", root / "files"
    data_dir.mkdir()
    files_dir.mkdir()
    port = free_port()
    server = LabelStudioServer(url=f"http://127.0.0.1:{port}", token=secrets.token_hex(20),
                               email="factory@example.com", password=secrets.token_urlsafe(12),
                               data_dir=data_dir, files_dir=files_dir, log_path=root / "label-studio.log")
    cmd = [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--username", server.email, "--password", server.password,
           "--user-token", server.token, "--enable-legacy-api-token"]
    log = open(server.log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=_env(data_dir, files_dir), cwd=root, start_new_session=True)
    try:
        _wait_ready(server, proc)
        yield server
    finally:
        _stop(proc)
        log.close()


def _wait_ready(server: LabelStudioServer, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Label Studio exited with {proc.returncode} during start-up:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    else:
        raise RuntimeError(f"Label Studio not up after {START_TIMEOUT:.0f}s:\n{server.log_tail()}")
    r = requests.get(f"{server.url}/api/current-user/whoami", headers=server.headers(), timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"Label Studio refuses the legacy token created at start-up (HTTP {r.status_code}); "
                           f"legacy tokens disabled for the organization?\n{server.log_tail()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of the process this fixture started
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
