"""Logging set-up for the command line: called once, by the entry point, before the command runs.
Commands never configure logging themselves; they only log. (The ML backend's process sets up
its own in backends/_wsgi.py from LOG_LEVEL.)"""
from __future__ import annotations

import argparse
import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def cli_level(args: argparse.Namespace) -> str:
    """``--log-level`` when given, else INFO with ``-v/--verbose``, else the command's
    ``default_log_level`` (set with ``parser.set_defaults``; INFO when it sets none)."""
    if getattr(args, "log_level", None):
        return str(args.log_level).upper()
    if getattr(args, "verbose", False):
        return "INFO"
    return str(getattr(args, "default_log_level", "INFO")).upper()


def setup_logging(level: str | int) -> None:
    """Root logger at ``level`` with one stderr handler; nothing when the process already has
    handlers (a host application or pytest owns logging then)."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)
