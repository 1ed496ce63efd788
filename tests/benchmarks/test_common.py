"""benchmarks/_common.py: what importing a benchmark does to the process."""
import os
import subprocess
import sys

from tests import REPO


def test_importing_a_benchmark_leaves_the_environment_alone():
    """A test that imports a benchmark's functions once got LF_ANSWER_CACHE=0 for the whole test process (the
    calibrate test counting answer-cache hits then failed when run after it); a benchmark run as a program still
    turns the cache off."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LF_ANSWER_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")}
    check = ("import os, sys; before = dict(os.environ); import benchmarks._common; "
             "print(sorted(set(os.environ.items()) - set(before.items())))")
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
    script = ("import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0]))); "
              "import _common; print(os.environ.get('LF_ANSWER_CACHE'))")
    probe = REPO / "benchmarks" / "_probe_env.py"
    probe.write_text(script.replace("; ", "\n"))
    try:
        out = subprocess.run([sys.executable, str(probe)], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120, check=True)
    finally:
        probe.unlink()
    assert out.stdout.strip() == "0"
