import glob
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `dtype: auto` means bf16 on a CPU with AMX and fp32 on one without: the suite runs every model in fp32 on
# every machine, so its results do not depend on the CPU CI lands on; tests/pipeline/test_hardware.py and
# tests/pipeline/providers/test_dtype.py test the other dtypes and the auto choice explicitly
os.environ.setdefault("LF_DTYPE", "fp32")

import pytest  # noqa: E402

# Every tests/fixtures_*.py is a fixture plugin (tiny models, servers, Label Studio).
pytest_plugins = sorted("tests." + os.path.basename(p)[:-3]
                        for p in glob.glob(os.path.join(os.path.dirname(__file__), "fixtures_*.py")))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """Session-wide directory where tiny models are built once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _model_dir_in_tmp(tmp_path, monkeypatch):
    """No test writes the backend cache (MODEL_DIR, default '.') into the checkout."""
    if "MODEL_DIR" not in os.environ:
        monkeypatch.setenv("MODEL_DIR", str(tmp_path / "model-dir"))
