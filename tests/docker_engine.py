"""A Docker engine for the compose test, and the images it runs, all made on this machine.

No image registry is reachable here, so nothing is pulled: the base image is Debian bookworm made by
``debootstrap --variant=minbase`` and ``docker import``; torch comes from where ``scripts/setup.sh`` gets
it (this machine's pip configuration), handed to the build as a ``WHEELS`` image; pip inside a build trusts
this machine's CA certificates through a BuildKit secret (never a layer).

``Engine.start()`` uses the engine at DOCKER_HOST (or the default socket) when one answers, else starts
``dockerd`` with its own socket, pidfile and exec-root (images and build cache in the default data-root, so
a second run builds from cache) and ``stop()`` stops only a daemon it started.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

DOCKER = "/usr/bin/docker"  # Debian's client, as old as the engine (a newer client's BuildKit needs API 1.44+)
DOCKERD = "/usr/sbin/dockerd"
COMPOSE = "/usr/bin/docker-compose"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", *sorted(map(str, Path("/usr/local/share/ca-certificates")
                                                              .glob("*.crt"))))


def missing_tools() -> list[str]:
    """What this machine lacks to run the compose test (empty: nothing)."""
    need = {DOCKER: "docker.io", COMPOSE: "docker-compose", DEBOOTSTRAP: "debootstrap"}
    missing = [f"{path} ({pkg})" for path, pkg in need.items() if not os.access(path, os.X_OK)]
    if not os.access(DOCKERD, os.X_OK) and not _answers(_default_host()):
        missing.append(f"a Docker engine ({DOCKERD} from docker.io, or one at DOCKER_HOST)")
    if os.geteuid() != 0:
        missing.append("root (dockerd, debootstrap)")
    free = free_gb(DATA_ROOT)
    if free < NEED_GB:
        missing.append(f"{NEED_GB} GB free for the images and their build cache ({free:.0f} GB free under {DATA_ROOT})")
    return missing


BRIDGE = Path("/sys/class/net/docker0")
DATA_ROOT = "/var/lib/docker"  # the engine's default data-root, where images and the build cache go
# the backend image holds torch's CUDA build (a ~7.7 GB virtualenv, built in one stage and copied into the
# next), plus Label Studio's image, the base, the wheels and BuildKit's cache: ~22 GB measured, with room
NEED_GB = 30


def free_gb(path: str) -> float:
    p = Path(path)
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free / 1e9


def _default_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _answers(host: str) -> bool:
    try:
        return subprocess.run([DOCKER, "-H", host, "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Engine:
    def __init__(self, work: Path):
        self.work = work
        self.host = _default_host()
        self.process: Optional[subprocess.Popen] = None
        self.log_path = work / "dockerd.log"
        # dockerd makes docker0 and its iptables chains and leaves both when it stops: put them back as they were
        self.bridge_before = BRIDGE.exists()
        self.iptables_before: Optional[str] = None

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        return {**env, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1", "COMPOSE_DOCKER_CLI_BUILD": "1", **extra}

    def start(self, timeout: float = 120) -> "Engine":
        if _answers(self.host):
            return self
        run_dir = self.work / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        if shutil.which("iptables-save") and shutil.which("iptables-restore"):
            saved = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
            self.iptables_before = saved.stdout if saved.returncode == 0 else None
        self.host = f"unix://{run_dir}/docker.sock"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [DOCKERD, "--host", self.host, "--pidfile", str(run_dir / "docker.pid"),
                 "--exec-root", str(run_dir / "exec")], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _answers(self.host):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not start:\n{self.log_tail()}")
            time.sleep(1)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # dockerd stops its containers and its containerd
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        if self.iptables_before is not None:
            subprocess.run(["iptables-restore"], input=self.iptables_before, capture_output=True, text=True,
                           timeout=30)
        if not self.bridge_before and BRIDGE.exists():
            subprocess.run(["ip", "link", "delete", BRIDGE.name], capture_output=True, timeout=30)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def docker(self, *args, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        out = subprocess.run([DOCKER, *args], env=self.env(), capture_output=True, text=True, timeout=timeout, **kw)
        if check and out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])} ... failed ({out.returncode}):\n{out.stderr[-4000:]}")
        return out

    def image_exists(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def import_dir(self, directory: Path, tag: str) -> None:
        """``tar -C directory -c . | docker import - tag``."""
        tar = subprocess.Popen(["tar", "-C", str(directory), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            self.docker("import", "-", tag, stdin=tar.stdout, timeout=1200)
        finally:
            tar.stdout.close()
            tar.wait()

    def build(self, tag: str, context: Path, *, dockerfile: Optional[Path] = None, timeout: float = 3600,
              **build_args: str) -> float:
        """Build with BuildKit and this machine's CA certificates as the ``ca-certificates`` secret; the
        seconds it took."""
        with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
            for path in CA_FILES:
                if Path(path).is_file():
                    ca.write(Path(path).read_text())
            ca.flush()
            args = ["build", "--progress=plain", "-t", tag, "--secret", f"id=ca-certificates,src={ca.name}"]
            if dockerfile is not None:
                args += ["-f", str(dockerfile)]
            for k, v in build_args.items():
                args += ["--build-arg", f"{k}={v}"]
            t0 = time.monotonic()
            out = self.docker(*args, str(context), check=False, timeout=timeout)
            if out.returncode != 0:
                raise RuntimeError(f"docker build {tag} failed:\n{(out.stdout + out.stderr)[-6000:]}")
            return time.monotonic() - t0


def debootstrap_image(engine: Engine, tag: str, work: Path) -> None:
    """Debian bookworm minbase as an image (what a ``python:3.11-slim``-like base needs is in the Dockerfile)."""
    root = work / "rootfs"
    try:
        out = subprocess.run([DEBOOTSTRAP, "--variant=minbase", "bookworm", str(root), DEBIAN_MIRROR],
                             capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{(out.stdout + out.stderr)[-4000:]}")
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        engine.import_dir(root, tag)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def wheels_image(engine: Engine, tag: str, work: Path, *requirements: str) -> None:
    """The wheels of ``requirements`` (and their dependencies), from this machine's pip configuration, as an
    image holding only those files (the Dockerfile's WHEELS build argument)."""
    dest = work / "wheels"
    try:
        out = subprocess.run([_host_pip(), "download", "--quiet", "--dest", str(dest), *requirements],
                             capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"pip download failed:\n{out.stderr[-4000:]}")
        engine.import_dir(dest, tag)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _host_pip() -> str:
    import sys
    return str(Path(sys.executable).parent / "pip")
