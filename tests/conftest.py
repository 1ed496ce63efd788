import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

pytest_plugins = [p for p in ("tests.fixtures_models", "tests.fixtures_servers")
                  if os.path.exists(os.path.join(os.path.dirname(__file__), p.split(".")[1] + ".py"))]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """Session-wide directory where tiny models are built once."""
    return tmp_path_factory.mktemp("models")
