"""`label-factory` itself: every sub-command is listed by a fast --help, and one whose module cannot be
imported is listed with the error instead of silently missing."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import cli

HEAVY = ("torch", "transformers", "supervision", "label_studio_sdk", "numpy", "PIL", "ray", "ultralytics")


def test_help_lists_every_command_without_importing_the_heavy_libraries():
    code = ("import sys, contextlib, io\n"
            "from pipeline.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "print(out.getvalue())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded, _, text = r.stdout.partition("\n")
    assert loaded == "[]", f"--help imported {loaded}"
    for name in ("run", "project", "config", *(n for names in cli.COMMANDS.values() for n in names)):
        assert f"    {name}" in text, (name, text)


def test_a_command_whose_module_cannot_be_imported_is_listed_with_its_error(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "pipeline.no_such_module", ("broken",))
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps help lines
    assert "broken" in text and "UNAVAILABLE: pipeline.no_such_module cannot be imported: ModuleNotFoundError" in text
    assert cli.main(["broken"]) == 2
    assert "error: this command is unavailable: pipeline.no_such_module cannot be imported" in capsys.readouterr().err
