"""Child services in their own process groups, stopped as a whole (no strays, ports freed)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import requests

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def local_host(host: str) -> str:
    """Where this machine reaches a service bound to ``host`` (every interface: loopback)."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def free_port(preferred: Optional[int] = None, host: str = "127.0.0.1") -> int:
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens there (connections left in TIME_WAIT do not count, as for the servers we start)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class Service:
    """A subprocess started in a new session; logs go to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict, log_path: Path, cwd: Optional[Path] = None):
        self.name, self.cmd, self.log_path = name, cmd, Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd, start_new_session=True)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float, ok: Callable[[requests.Response], bool] = lambda r: r.ok,
                  auth=None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start-up "
                                   f"(log: {self.log_path}):\n{self.log_tail()}")
            try:
                if ok(requests.get(url, timeout=2, auth=auth)):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:.0f} s (log: {self.log_path}):\n"
                           f"{self.log_tail()}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # children that outlived their leader (the group still exists): end them too
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
