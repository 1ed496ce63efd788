"""Start a local Label Studio (SQLite) with an admin user and a legacy API token.

Label Studio lives in its own virtualenv (its pins clash with ours): ``.venv-ls`` next to the
checkout, or LABEL_STUDIO_BIN. The user, password and token are created on the first start and
kept in ``<data_dir>/label-factory-admin.json`` so later starts reuse them."""
from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import requests

from pipeline.atomic import save_text
from pipeline.settings import Stack, process_environment
from pipeline.stack.processes import Service, free_port, local_host

REPO = Path(__file__).resolve().parents[2]


def label_studio_bin() -> Optional[Path]:
    for cand in (Stack.read().label_studio_bin, REPO / ".venv-ls" / "bin" / "label-studio",
                 shutil.which("label-studio")):
        if cand and Path(cand).exists():
            return Path(cand)
    return None


@dataclass
class Admin:
    email: str
    password: str
    token: str


def load_or_create_admin(data_dir: Path, email: str = "admin@label-factory.local") -> Admin:
    path = data_dir / "label-factory-admin.json"
    if path.exists():
        return Admin(**json.loads(path.read_text()))
    admin = Admin(email=email, password=secrets.token_urlsafe(12), token=secrets.token_hex(20))
    save_text(path, json.dumps(asdict(admin)), mode=0o600)  # private from its creation on
    return admin


def label_studio_env(data_dir: Path, files_dir: Path, public_url: Optional[str] = None) -> dict:
    """Label Studio's environment; ``public_url``: the URL it is reached at (its LABEL_STUDIO_HOST), which
    may hold a sub-path (``http://host/ls``: its pages, API and media URLs then start with /ls, and a proxy
    in front of it takes /ls off the requests it forwards, as Label Studio expects)."""
    env = {k: v for k, v in process_environment().items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.pop("VIRTUAL_ENV", None)
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_dir),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        # the ML backend runs on 127.0.0.1; 1.23 blocks local addresses by default
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
    })
    if public_url:
        env["LABEL_STUDIO_HOST"] = public_url.rstrip("/")
    return env


@dataclass
class LabelStudio:
    url: str
    admin: Admin
    data_dir: Path
    files_dir: Path
    service: Service
    _pat: Optional[str] = None

    @property
    def token(self) -> str:
        return self.admin.token

    @property
    def email(self) -> str:
        return self.admin.email

    @property
    def password(self) -> str:
        return self.admin.password

    @property
    def log_path(self) -> Path:
        return self.service.log_path

    def log_tail(self, n: int = 60) -> str:
        return self.service.log_tail(n)

    def personal_access_token(self) -> str:
        """The admin's personal access token (a JWT refresh token), created on first use.

        Label Studio keeps one per user (a second POST /api/token/ answers 409), so it is cached."""
        if self._pat is None:
            r = requests.post(f"{self.url}/api/token/", headers=self.headers(), timeout=30)
            r.raise_for_status()
            self._pat = r.json()["token"]
        return self._pat

    def headers(self) -> dict:
        return {"Authorization": f"Token {self.admin.token}"}

    def client(self):
        """The process's label-studio-sdk client for this Label Studio and the admin's legacy token."""
        from pipeline.labelstudio import client as credentials
        return credentials.client(self.url, self.admin.token)

    def stop(self) -> None:
        self.service.stop()


def start_command(binary, host: str, port: int, data_dir: Path, admin: Admin) -> list[str]:
    """``label-studio start`` with the admin's credentials given as ``--option=value``: a generated password
    may start with "-", which ``--password VALUE`` would hand to argparse as another option."""
    return [str(binary), "start", "--no-browser", "--internal-host", host, "--port", str(port),
            "--data-dir", str(data_dir), f"--username={admin.email}", f"--password={admin.password}",
            f"--user-token={admin.token}", "--enable-legacy-api-token"]


def start_label_studio(root: Path, port: Optional[int] = None, host: str = "127.0.0.1",
                       timeout: Optional[float] = None, public_url: Optional[str] = None) -> LabelStudio:
    """Label Studio on ``host:port``, answering within ``timeout`` seconds (default LABEL_STUDIO_START_TIMEOUT).
    ``public_url``: where it is reached instead (a proxy in front of it, e.g. under a sub-path:
    ``label_studio_env``); ``.url`` is that URL, and start-up is checked through it."""
    timeout = Stack.read().label_studio_start_timeout if timeout is None else timeout
    binary = label_studio_bin()
    if binary is None:
        raise RuntimeError("Label Studio is not installed: run scripts/setup.sh (it installs it into .venv-ls) "
                           "or set LABEL_STUDIO_BIN to a label-studio executable")
    root = Path(root)
    data_dir, files_dir = root / "data", root / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    admin = load_or_create_admin(data_dir)
    port = free_port(port, host)
    cmd = start_command(binary, host, port, data_dir, admin)
    svc = Service("Label Studio", cmd, label_studio_env(data_dir, files_dir, public_url), root / "label-studio.log",
                  cwd=root)
    url = (public_url or f"http://{local_host(host)}:{port}").rstrip("/")
    ls = LabelStudio(url=url, admin=admin, data_dir=data_dir, files_dir=files_dir, service=svc)
    try:
        svc.wait_http(f"{ls.url}/health", timeout)
        r = requests.get(f"{ls.url}/api/current-user/whoami", headers=ls.headers(), timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"Label Studio refuses the admin's legacy token (HTTP {r.status_code}); "
                               f"legacy tokens disabled for the organization? (log: {svc.log_path})")
    except BaseException:
        svc.stop()
        raise
    return ls
