"""pipeline/stack/ls_server.py: the ``label-studio start`` command line (Label Studio's own argument parser,
from ``.venv-ls``, reads the admin's credentials back, also a generated password that starts with "-": 1 in 64
of them did not start) and the admin's login file."""
import json
import subprocess
from pathlib import Path

import pytest

from pipeline.stack.ls_server import Admin, label_studio_bin, load_or_create_admin, start_command
from tests.dying_writes import assert_died_of_a_full_disk, run_until_disk_full, stray_files

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


def test_admin_file_cut_short_by_a_full_disk_is_created_again(tmp_path):
    proc = run_until_disk_full("from pathlib import Path\nfrom pipeline.stack.ls_server import load_or_create_admin",
                               f"load_or_create_admin(Path({str(tmp_path)!r}))", limit=20)
    assert_died_of_a_full_disk(proc)
    assert stray_files(tmp_path, set()) == []
    admin = load_or_create_admin(tmp_path)  # a half-written file would not parse here
    path = tmp_path / "label-factory-admin.json"
    assert json.loads(path.read_text())["token"] == admin.token and len(admin.token) == 40
    assert path.stat().st_mode & 0o777 == 0o600
