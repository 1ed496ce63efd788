"""pipeline/atomic.py: a file or a folder is replaced whole or not at all."""
import os

import pytest

from pipeline.atomic import building_dir, save_atomic, save_text


def test_a_writer_that_raises_midway_leaves_the_previous_file_and_no_temp(tmp_path):
    path = tmp_path / "state.json"
    save_text(path, "old")

    def writer(f):
        f.write(b"half of the new")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        save_atomic(path, writer)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]


def test_mode_is_the_files_from_its_creation_on(tmp_path):
    seen = []
    save_atomic(tmp_path / "secret.json", lambda f: seen.append(os.stat(f.fileno()).st_mode & 0o777), mode=0o600)
    assert seen == [0o600] and (tmp_path / "secret.json").stat().st_mode & 0o777 == 0o600


def test_building_dir_replaces_the_folder_only_when_the_block_succeeds(tmp_path):
    out = tmp_path / "ds"
    with building_dir(out) as new:
        (new / "a.txt").write_text("first")
    with pytest.raises(KeyboardInterrupt):
        with building_dir(out) as new:
            (new / "b.txt").write_text("half")
            raise KeyboardInterrupt
    assert os.listdir(out) == ["a.txt"] and os.listdir(tmp_path) == ["ds"]
    with building_dir(out) as new:
        (new / "c.txt").write_text("second")
    assert os.listdir(out) == ["c.txt"] and os.listdir(tmp_path) == ["ds"]

