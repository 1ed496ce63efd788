"""pipeline/settings.py: every variable declared once, read when asked, errors that name the variable,
secrets masked, ``label-factory settings``, the generated docs table, and no environment read elsewhere."""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import cli, settings
from pipeline.settings import AnswerCache, Identify, Images, LabelStudio, Models, Paths, Predict, Server, SettingsError
from tests import REPO

PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"  # a JWT's shape
LEGACY = "0123456789abcdef0123456789abcdef01234567"


# -- types, defaults, reading -----------------------------------------------------------------------
def test_defaults_of_an_empty_environment():
    assert Predict.read({}).concurrency == 4 and Predict.read({}).slot_wait == 5.0
    assert Predict.read({}).max_requests is None and Predict.read({}).deadline_seconds == 90.0
    assert Images.read({}).max_bytes == 50_000_000 and Images.read({}).fetch_timeout == 30.0
    assert Images.read({}).verify_ssl is True and Images.read({}).allowed_hosts == ()
    assert Paths.read({}).model_dir == Path(".") and Paths.read({}).project_config is None
    assert Server.read({}).port == 9090 and Server.read({}).threads == 32 and Server.read({}).log_level == "INFO"
    assert Server.read({}).preload_models is True and Server.read({}).control_socket is False
    assert AnswerCache.read({}).enabled is True and AnswerCache.read({}).max_bytes == 1024 * 1024 * 1024
    assert Identify.read({}).ann_build == "background" and Identify.read({}).faiss_threads == 1
    assert Models.read({}).dtype == "auto" and Models.read({}).overrides() == {}
    assert LabelStudio.read({}).url == "" and LabelStudio.read({}).key == ""


def test_values_are_parsed_to_their_types():
    assert Predict.read({"PREDICT_CONCURRENCY": "2", "PREDICT_SLOT_WAIT": "0.5"}).slot_wait == 0.5
    assert Predict.read({"PREDICT_DEADLINE": "0"}).deadline_seconds is None  # 0 or less: no deadline
    assert Images.read({"ALLOWED_IMAGE_HOSTS": " cdn.example.com, 127.0.0.1:8081,,.example.org "}).allowed_hosts \
        == ("cdn.example.com", "127.0.0.1:8081", ".example.org")
    for off in ("0", "false", "No", "off"):
        assert Images.read({"VERIFY_SSL": off}).verify_ssl is False
        assert AnswerCache.read({"LF_ANSWER_CACHE": off}).enabled is False
    assert Server.read({"GUNICORN_CONTROL_SOCKET": "1", "LOG_LEVEL": "debug"}).control_socket is True
    assert Server.read({"LOG_LEVEL": " warning "}).log_level == "WARNING"
    assert Models.read({"LF_DTYPE": " BF16 "}).dtype == "bf16"
    assert Identify.read({"LF_ANN_BUILD": "SYNC"}).ann_build == "sync"
    assert Paths.read({"MODEL_DIR": "/var/lib/lf"}).model_dir == Path("/var/lib/lf")
    assert AnswerCache.read({"LF_ANSWER_CACHE_MB": "0.5"}).max_bytes == 512 * 1024


def test_an_empty_variable_is_unset_and_the_older_spellings_come_second():
    assert Predict.read({"PREDICT_CONCURRENCY": ""}).concurrency == 4
    assert LabelStudio.read({"LABEL_STUDIO_HOST": "http://ls:8080/"}).url == "http://ls:8080"
    both = LabelStudio.read({"LABEL_STUDIO_URL": "http://new/", "LABEL_STUDIO_HOST": "http://old",
                             "LABEL_STUDIO_API_KEY": "", "LABEL_STUDIO_ACCESS_TOKEN": LEGACY})
    assert both.url == "http://new" and both.key == LEGACY


def test_values_are_read_when_asked_and_an_unchanged_environment_is_not_read_again(monkeypatch):
    monkeypatch.setenv("PREDICT_CONCURRENCY", "3")
    first = Predict.read()
    assert first.concurrency == 3 and Predict.read() is first
    monkeypatch.setenv("PREDICT_CONCURRENCY", "5")
    assert Predict.read().concurrency == 5
    monkeypatch.delenv("PREDICT_CONCURRENCY")
    assert Predict.read().concurrency == 4


def test_the_yaml_overrides_are_the_models_group():
    assert Models.override_fields()["LF_VLM_URL"] == ("vlm", "url")
    assert Models.override_fields()["LF_CLIP_PRETRAINED"] == ("identify", "pretrained")
    assert set(Models.override_fields()) == {v.name for v in settings.variables() if v.overrides}
    assert Models.read({"LF_VLM_URL": "http://m:8000/v1", "LF_DTYPE": "fp32"}).overrides() \
        == {"LF_VLM_URL": "http://m:8000/v1"}


def test_every_variable_is_declared_once_with_a_meaning():
    names = [n for g in settings.GROUPS for n in g.names()]
    assert len(names) == len(set(names))
    assert all(v.doc and v.type for v in settings.variables())


# -- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("group, environ, says", [
    (Predict, {"PREDICT_CONCURRENCY": "four"}, "PREDICT_CONCURRENCY='four': input should be a valid integer"),
    (Predict, {"PREDICT_CONCURRENCY": "0"}, "PREDICT_CONCURRENCY='0': input should be greater than or equal to 1"),
    (Images, {"VERIFY_SSL": "maybe"}, "VERIFY_SSL='maybe': input should be a valid boolean"),
    (Images, {"IMAGE_FETCH_TIMEOUT": "-1"}, "IMAGE_FETCH_TIMEOUT='-1': input should be greater than 0"),
    (Models, {"LF_DTYPE": "half"}, "LF_DTYPE='half': input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
    (Server, {"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud': input should be 'DEBUG', 'INFO', 'WARNING'"),
    (Identify, {"LF_ANN_BUILD": "later"}, "LF_ANN_BUILD='later': input should be 'background' or 'sync'"),
])
def test_a_bad_value_is_an_error_naming_the_variable(group, environ, says):
    with pytest.raises(SettingsError, match=says.replace("(", r"\(")) as e:
        group.read(environ)
    assert isinstance(e.value, ValueError)


def test_every_bad_value_of_a_group_is_named_and_no_secret_is_shown():
    with pytest.raises(SettingsError) as e:
        Server.read({"PORT": "x", "THREADS": "0", "BASIC_AUTH_PASS": "hunter2-secret"})
    assert "PORT='x'" in str(e.value) and "THREADS='0'" in str(e.value)
    assert "hunter2" not in str(e.value)


def test_a_bad_value_stops_only_its_group():
    environ = {"PORT": "not-a-port", "PREDICT_CONCURRENCY": "2"}
    with pytest.raises(SettingsError, match="PORT"):
        Server.read(environ)
    assert Predict.read(environ).concurrency == 2


# -- secrets ----------------------------------------------------------------------------------------
def test_secrets_are_masked_and_a_label_studio_key_says_its_kind():
    assert settings.token_kind(PAT) == "personal access token" and settings.token_kind(LEGACY) == "legacy token"
    found = {e.variable.name: e for e in settings.effective(
        {"LABEL_STUDIO_ACCESS_TOKEN": PAT, "BASIC_AUTH_PASS": "hunter2", "LF_OPENVERSE_TOKEN": "ov-tok"})}
    key = found["LABEL_STUDIO_API_KEY"]
    assert key.shown() == "set: personal access token" and key.source == "environment (LABEL_STUDIO_ACCESS_TOKEN)"
    assert key.as_json()["set"] is True and key.as_json()["kind"] == "personal access token"
    assert found["BASIC_AUTH_PASS"].shown() == "set" and found["LF_DDGS_PROXY"].shown() == "(not set)"
    dumped = json.dumps([e.as_json() for e in found.values()]) + repr(LabelStudio.read({"LABEL_STUDIO_API_KEY": PAT}))
    assert PAT not in dumped and "hunter2" not in dumped and "ov-tok" not in dumped


# -- label-factory settings -------------------------------------------------------------------------
def _clean(monkeypatch):
    for name in (n for g in settings.GROUPS for n in g.names()):
        monkeypatch.delenv(name, raising=False)


def test_settings_command_prints_each_value_and_where_it_came_from(monkeypatch, capsys):
    _clean(monkeypatch)
    monkeypatch.setenv("LABEL_STUDIO_HOST", "http://ls:8080")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", LEGACY)
    monkeypatch.setenv("PREDICT_DEADLINE", "30")
    assert cli.main(["settings"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(rows) == {v.name for v in settings.variables()}
    assert rows["LABEL_STUDIO_URL"].split()[1:] == ["http://ls:8080", "environment", "(LABEL_STUDIO_HOST)"]
    assert rows["LABEL_STUDIO_API_KEY"].split()[1:] == ["set:", "legacy", "token", "environment"]
    assert rows["PREDICT_DEADLINE"].split()[1:] == ["30.0", "environment"]
    assert rows["PREDICT_CONCURRENCY"].split()[1:] == ["4", "default"]
    assert LEGACY not in out


def test_settings_command_shows_the_project_yaml_under_unset_overrides(monkeypatch, capsys, tmp_path):
    _clean(monkeypatch)
    path = tmp_path / "p.yaml"
    data = yaml.safe_load((REPO / "projects" / "stop-signs.yaml").read_text())
    data["providers"]["vlm"]["url"] = "http://yaml-vlm:8000/v1"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("PROJECT_CONFIG", str(path))
    monkeypatch.setenv("LF_GROUNDER_MODEL", "/models/owl")
    assert cli.main(["settings", "--json"]) == 0
    found = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert found["LF_VLM_URL"]["value"] == "http://yaml-vlm:8000/v1"
    assert found["LF_VLM_URL"]["source"] == f"project YAML {path}: providers.vlm.url"
    assert found["LF_GROUNDER_MODEL"] == {**found["LF_GROUNDER_MODEL"], "value": "/models/owl",
                                          "source": "environment"}
    assert found["PREDICT_MAX_REQUESTS"]["default"] == "THREADS - 2" and found["MODEL_DIR"]["default"] == "."


def test_settings_command_names_every_bad_value_and_fails(monkeypatch, capsys):
    _clean(monkeypatch)
    monkeypatch.setenv("PORT", "http")
    monkeypatch.setenv("LF_ANN_MIN", "many")
    monkeypatch.setenv("WORKERS", "3")
    assert cli.main(["settings"]) == 2
    captured = capsys.readouterr()
    assert "PORT='http'" in captured.err and "LF_ANN_MIN='many'" in captured.err
    rows = {line.split()[0]: line for line in captured.out.splitlines() if line.startswith("  ")}
    assert "invalid" in rows["PORT"] and rows["WORKERS"].split()[1:] == ["3", "environment"]


def test_settings_command_still_prints_everything_when_the_project_yaml_is_broken(monkeypatch, capsys, tmp_path):
    _clean(monkeypatch)
    monkeypatch.setenv("PROJECT_CONFIG", str(tmp_path / "gone.yaml"))
    assert cli.main(["settings"]) == 2
    captured = capsys.readouterr()
    assert "gone.yaml: cannot read project file" in captured.err
    rows = {line.split()[0]: line.split()[1:] for line in captured.out.splitlines() if line.startswith("  ")}
    assert rows["PROJECT_CONFIG"] == [str(tmp_path / "gone.yaml"), "environment"] and len(rows) > 50


def test_a_command_stops_with_the_variable_named(monkeypatch, capsys):
    monkeypatch.setenv("LF_DTYPE", "half")
    assert cli.main(["project", "--project", str(REPO / "projects" / "stop-signs.yaml")]) == 2
    assert "error: LF_DTYPE='half'" in capsys.readouterr().err


# -- the contract's reader and the servers' hand-over -----------------------------------------------
def test_the_contract_reads_what_pipeline_declares_with_the_same_defaults():
    from backends.base import settings as contract
    environ = {"MODEL_DIR": "/m", "BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "pass-word-9", "PREDICT_CONCURRENCY": "2",
               "PREDICT_SLOT_WAIT": "1.5", "PREDICT_MAX_REQUESTS": "7", "LABEL_STUDIO_HOST": "http://ls/",
               "LABEL_STUDIO_ACCESS_TOKEN": LEGACY}
    for env in ({}, environ):
        assert {n: getattr(contract.FromEnvironment(env), n) for n in contract.NAMES} \
            == {n: getattr(settings.ContractValues(env), n) for n in contract.NAMES}
    bad = contract.FromEnvironment({"PREDICT_CONCURRENCY": "x", "BASIC_AUTH_USER": "u"})
    assert bad.basic_auth_user == "u"  # each value on its own: a bad one fails only where it is used
    with pytest.raises(ValueError, match="PREDICT_CONCURRENCY='x': not an integer"):
        assert bad.predict_concurrency is None  # not reached


def test_label_factorys_servers_hand_the_contract_pipelines_settings(monkeypatch):
    import backends.autolabel.model  # noqa: F401 - hands the contract pipeline's settings
    from backends.base import settings as contract
    from backends.base import worker
    monkeypatch.setenv("PREDICT_CONCURRENCY", "3")
    assert worker.slot_count() == 3
    monkeypatch.setenv("PREDICT_CONCURRENCY", "zero")  # pipeline's reader: a SettingsError, not a warning
    with pytest.raises(SettingsError, match="PREDICT_CONCURRENCY='zero'"):
        worker.slot_count()
    assert isinstance(contract.current(), settings.ContractValues)


def test_model_dir_has_one_default_for_every_store(monkeypatch, tmp_path):
    """MODEL_DIR unset: the contract's cache, the answer cache and the identify indexes share one directory
    (the identify indexes used ./models while the rest used the working directory)."""
    from backends.base.cache import get_cache
    from pipeline import answer_cache
    from pipeline.references.fit import ProjectIndexes
    monkeypatch.delenv("MODEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    dirs = {get_cache().path.parent.resolve(), answer_cache.store().path.parent.resolve(),
            ProjectIndexes().model_dir.resolve()}
    assert dirs == {tmp_path.resolve()}


# -- one logging set-up -----------------------------------------------------------------------------
def test_the_server_logs_in_the_command_lines_format_and_refuses_a_bad_level(tmp_path):
    code = ("import logging, backends._wsgi; logging.getLogger('lf.test').warning('hello'); "
            "logging.getLogger('label_studio_sdk').info('https://signed?X-Amz-Signature=s3cret')")
    env = {"PYTHONPATH": str(REPO), "MODEL_DIR": str(tmp_path), "LOG_LEVEL": "info", "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stderr.splitlines() if "hello" in ln)
    assert line.split(" ", 2)[2] == "WARNING lf.test: hello"  # after the date and time
    assert "s3cret" not in run.stderr
    bad = subprocess.run([sys.executable, "-c", "import backends._wsgi"], cwd=tmp_path,
                         env={**env, "LOG_LEVEL": "loud", "PREDICT_CONCURRENCY": "0", "LF_WIKIMEDIA_THUMB_WIDTH": "x"},
                         capture_output=True, text=True, timeout=300)
    error = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode != 0 and "LOG_LEVEL='loud'" in error and "PREDICT_CONCURRENCY='0'" in error
    assert "LF_WIKIMEDIA_THUMB_WIDTH" not in error  # the importer's, not the server's


# -- the docs table is generated from the declarations ----------------------------------------------
def _hook():
    spec = importlib.util.spec_from_file_location("settings_reference", REPO / "docs/hooks/settings_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Page:
    def __init__(self, uri):
        self.file = type("File", (), {"src_uri": uri})()


def test_the_docs_page_gets_a_table_row_per_declared_variable():
    hook = _hook()
    page = (REPO / "docs" / "reference" / "settings.md").read_text()
    built = hook.on_page_markdown(page, _Page("reference/settings.md"), None, None)
    assert hook.MARKER not in built
    rows = [line for line in built.splitlines() if line.startswith("| `")]
    for v in settings.variables():
        row = next(r for r in rows if r.startswith(f"| `{v.name}`"))
        assert v.doc.split(".")[0].replace("|", "\\|") in row
    assert any(r.startswith("| `HF_ENDPOINT`") for r in rows)
    assert "| `PREDICT_MAX_REQUESTS` | integer | `THREADS - 2` |" in built
    assert hook.on_page_markdown("other", _Page("index.md"), None, None) == "other"
    with pytest.raises(RuntimeError, match="marker"):
        hook.on_page_markdown("# Settings\n", _Page("reference/settings.md"), None, None)


# -- the environment is read in the settings modules only -------------------------------------------
SETTINGS_MODULES = {"pipeline/settings.py", "backends/base/settings.py"}
# library plumbing: variables label-factory does not read as settings, handled for the library that does
ALLOWED = {
    "pipeline/providers/yolo.py": (("OMP_NUM_THREADS", "YOLO_AUTOINSTALL"),
                                   "ultralytics sets OMP_NUM_THREADS=1 on import (put back) and may pip-install "
                                   "at run time (YOLO_AUTOINSTALL=false)"),
    "pipeline/predict/ray_job.py": (("LOCAL_ONLY_ENV", "AUTH_MODE_ENV"),
                                    "Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when imported: a local Ray "
                                    "listens on loopback only; RAY_AUTH_MODE=token makes Ray send its token"),
}
ENV_NAMES = {"environ", "getenv", "putenv", "unsetenv", "getenvb", "environb"}


def environment_reads(path: Path) -> list[tuple[int, str]]:
    """(line, source line) of every use of ``os.environ`` / ``os.getenv`` (and ``from os import ...``)."""
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and node.attr in ENV_NAMES and isinstance(node.value, ast.Name) \
                and node.value.id in ("os", "posix"):
            found.append((node.lineno, lines[node.lineno - 1].strip()))
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "posix") \
                and any(a.name in ENV_NAMES for a in node.names):
            found.append((node.lineno, lines[node.lineno - 1].strip()))
    return found


def test_the_environment_is_read_in_the_settings_modules_only():
    stray = []
    for path in sorted([*REPO.glob("pipeline/**/*.py"), *REPO.glob("backends/**/*.py")]):
        rel = path.relative_to(REPO).as_posix()
        if rel in SETTINGS_MODULES:
            continue
        names, _reason = ALLOWED.get(rel, ((), ""))
        stray += [f"{rel}:{n}: {src}" for n, src in environment_reads(path) if not any(a in src for a in names)]
    assert not stray, "read the environment through pipeline/settings.py:\n" + "\n".join(stray)
    for rel in ALLOWED:  # the allowances are still needed
        assert environment_reads(REPO / rel), f"{rel} no longer touches the environment: drop its allowance"
