"""Which project YAML a Label Studio project uses: its ML backend extra params, else PROJECT_CONFIG.

Extra params can be set by anyone who may edit the Label Studio project, so they only choose
among the YAML files in PROJECTS_DIR (default ./projects): ``{"project": "stop-signs"}`` or
``{"project_config": "stop-signs.yaml"}``. PROJECT_CONFIG (set by whoever runs the backend)
may be any path."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from backends.base.errors import ExtraParamsError
from pipeline.config import ConfigError


def projects_dir() -> Path:
    return Path(os.getenv("PROJECTS_DIR") or Path.cwd() / "projects").resolve()


def resolve_project_path(extra_params: Optional[dict]) -> Path:
    extra = extra_params or {}
    name = extra.get("project_config") or extra.get("project")
    if name:
        if not isinstance(name, str):
            raise ExtraParamsError("extra params: 'project' / 'project_config' must be a string")
        base = projects_dir()
        candidate = (base / name).resolve()
        if candidate.suffix not in (".yaml", ".yml"):
            candidate = candidate.with_name(candidate.name + ".yaml")
        if base not in candidate.parents:
            raise ExtraParamsError(f"extra params: project {name!r} must name a YAML file inside PROJECTS_DIR "
                                   f"({base})")
        if not candidate.is_file():
            raise ExtraParamsError(f"extra params: no project {name!r} in PROJECTS_DIR ({base})")
        return candidate
    env = os.getenv("PROJECT_CONFIG")
    if env:
        return Path(env)
    raise ConfigError("no project YAML: set PROJECT_CONFIG on the backend, or the extra params "
                      '{"project": "<name>"} (a file in PROJECTS_DIR) on the Label Studio model connection')
