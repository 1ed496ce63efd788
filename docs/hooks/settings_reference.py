"""MkDocs hook: the settings reference page's tables are the declarations of ``pipeline/settings.py``.

Each group of variables becomes a table (variable, type, default, meaning), built at build time from the
settings classes of the checkout being built, so the page cannot fall behind the code; then the variables
only libraries read (``LIBRARY_VARIABLES``).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = "reference/settings.md"
MARKER = "<!-- settings-table -->"


def _settings():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the checkout being built, ahead of any installed copy
    return importlib.import_module("pipeline.settings")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_tables() -> str:
    settings = _settings()
    parts = []
    for group in settings.GROUPS:
        rows = [v for v in settings.variables() if v.group is group]
        lines = [f"## {group.title}", "", "| variable | type | default | meaning |", "|---|---|---|---|"]
        for v in rows:
            name = f"`{v.name}`" + "".join(f" (or `{a}`)" for a in v.also)
            doc = v.doc + (f" Also read by {v.read_by}." if v.read_by else "")
            default = f"`{_cell(v.default)}`" if v.default else "—"
            lines.append(f"| {name} | {_cell(v.type)} | {default} | {_cell(doc)} |")
        parts.append("\n".join(lines) + "\n")
    lines = ["## Read by libraries only", "", "label-factory does not read these; the libraries named do.", "",
             "| variable | read by | what it sets |", "|---|---|---|"]
    for lib in settings.LIBRARY_VARIABLES:
        lines.append(f"| `{lib.name}` | {_cell(lib.read_by)} | {_cell(lib.doc)} |")
    parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RuntimeError(f"{PAGE} lost its {MARKER} marker")
    return markdown.replace(MARKER, settings_tables())
