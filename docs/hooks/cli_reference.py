"""MkDocs hook: the command-line reference page is the `--help` of `label-factory` and of every sub-command.

The text is produced at build time by calling the console script's entry point in this process, so the page
always matches the code it is built from. Sub-commands are found in each help text's positional arguments
(argparse lists sub-parsers there as ``{a,b,c}``) and followed down (``identify index``, ...).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = "pipeline.cli:main"  # setup.py's console_scripts entry for `label-factory`
PAGE = "reference/cli.md"
MARKER = "<!-- cli-help -->"
WIDTH = "100"  # argparse wraps at $COLUMNS
_SUBCOMMANDS = re.compile(r"^positional arguments:\n\s+\{([\w,-]+)\}", re.M)


def _entry_point():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the checkout being built, ahead of any installed copy
    module, _, name = ENTRY_POINT.partition(":")
    return getattr(importlib.import_module(module), name)


def _help(main, argv: list[str]) -> str:
    out = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                main([*argv, "--help"])
            except SystemExit as e:
                if e.code not in (0, None):
                    raise RuntimeError(f"label-factory {' '.join(argv)} --help exited {e.code}: "
                                       f"{err.getvalue().strip()}") from None
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    if not out.getvalue().strip():
        raise RuntimeError(f"label-factory {' '.join(argv)} --help printed nothing")
    return out.getvalue()


def _walk(main, argv: list[str], seen: dict[str, str]) -> None:
    text = _help(main, argv)
    seen[" ".join(["label-factory", *argv])] = text
    found = _SUBCOMMANDS.search(text)
    for name in found.group(1).split(",") if found else ():
        _walk(main, [*argv, name], seen)


def cli_reference() -> str:
    pages: dict[str, str] = {}
    _walk(_entry_point(), [], pages)
    parts = []
    for command, text in pages.items():
        parts.append(f"## `{command}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RuntimeError(f"{PAGE} lost its {MARKER} marker")
    return markdown.replace(MARKER, cli_reference())
