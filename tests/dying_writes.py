"""Writes that die midway, for real: run Python code in a child process whose files cannot grow past a
limit once the setup is done (what a full disk does to a write: EFBIG after some bytes went out)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests import REPO


def run_until_disk_full(setup: str, write: str, limit: int) -> subprocess.CompletedProcess:
    """Run ``setup``, then ``write`` with no file allowed past ``limit`` bytes; the child's result."""
    code = "\n".join([textwrap.dedent(setup),
                      "import resource, signal",
                      "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill",
                      "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]",
                      f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))",
                      textwrap.dedent(write)])
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def assert_died_of_a_full_disk(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode != 0 and "File too large" in proc.stderr, proc.stderr[-2000:]


def stray_files(folder: Path, keep: set) -> list[str]:
    """Names in ``folder`` (recursively) other than ``keep``: what a dead write left behind."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file()
                  and str(p.relative_to(folder)) not in keep)
