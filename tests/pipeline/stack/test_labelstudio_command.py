"""The ``label-studio start`` command line: Label Studio's own argument parser (from ``.venv-ls``) reads the
admin's credentials back, also a generated password that starts with "-" (1 in 64 of them did not start)."""
import json
import subprocess
from pathlib import Path

import pytest

from pipeline.stack.labelstudio import Admin, label_studio_bin, start_command

PARSE = ("import json, sys; from label_studio.core.argparser import parse_input_args; "
         "a = parse_input_args(sys.argv[1:]); print(json.dumps([a.username, a.password, a.user_token]))")


@pytest.mark.parametrize("password", ["-Jx3_kQ9zVb2mW7a", "plain-password_0"])
def test_label_studio_parses_the_credentials(password, tmp_path):
    binary = label_studio_bin()
    if binary is None:
        pytest.skip("Label Studio is not installed (scripts/setup.sh installs it into .venv-ls)")
    python = Path(binary).parent / "python"
    admin = Admin(email="admin@label-factory.local", password=password, token="ab" * 20)
    cmd = start_command(binary, "127.0.0.1", 8080, tmp_path, admin)
    out = subprocess.run([str(python), "-c", PARSE, *cmd[1:]], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [admin.email, password, admin.token]
