"""Which project YAML a Label Studio project uses: its ML backend extra params, else PROJECT_CONFIG.

Extra params can be set by anyone who may edit the Label Studio project, so they only choose
among the YAML files in PROJECTS_DIR (default ./projects): ``{"project": "stop-signs"}`` or
``{"project_config": "stop-signs.yaml"}``, and they are told which name was refused and why in
one line, never where PROJECTS_DIR is on the server. Any other key is refused too: a typo would
otherwise leave the project on PROJECT_CONFIG without a word. PROJECT_CONFIG (set by whoever runs
the backend) may be any path."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from backends.base.errors import ExtraParamsError
from pipeline.config import ConfigError
from pipeline.settings import Paths

KEYS = ("project", "project_config")
MAX_NAME = 255  # characters of a project name (a file name, or a short path inside PROJECTS_DIR)


def projects_dir() -> Path:
    return Paths.read().projects_dir.resolve()


def _shown(text: str, limit: int = 60) -> str:
    """``text`` quoted on one line, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _checked_name(extra: dict) -> Optional[str]:
    unknown = [k for k in extra if k not in KEYS]
    if unknown:
        raise ExtraParamsError(f"extra params: unknown key(s) {', '.join(_shown(str(k)) for k in unknown[:5])}; "
                               f"this backend reads only {' or '.join(map(repr, KEYS))}")
    name = extra.get("project_config") or extra.get("project")
    if not name:
        return None
    if not isinstance(name, str):
        raise ExtraParamsError("extra params: 'project' / 'project_config' must be a string")
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise ExtraParamsError(f"extra params: project {_shown(name)} is not a file name: at most {MAX_NAME} "
                               f"characters, no control characters")
    return name


def resolve_project_path(extra_params: Optional[dict]) -> Path:
    name = _checked_name(extra_params or {})
    if name:
        base = projects_dir()
        candidate = (base / name).resolve()
        if candidate.suffix not in (".yaml", ".yml"):
            candidate = candidate.with_name(candidate.name + ".yaml")
        if base not in candidate.parents:
            raise ExtraParamsError(f"extra params: project {_shown(name)} must name a YAML file inside PROJECTS_DIR")
        try:
            found = candidate.is_file()
        except OSError:  # e.g. a path component longer than the file system allows
            found = False
        if not found:
            raise ExtraParamsError(f"extra params: no project {_shown(name)} in PROJECTS_DIR")
        return candidate
    path = Paths.read().project_config
    if path:
        return path
    raise ConfigError("no project YAML: set PROJECT_CONFIG on the backend, or the extra params "
                      '{"project": "<name>"} (a file in PROJECTS_DIR) on the Label Studio model connection')
