"""Logging set-up, the one for every label-factory process: called once, by the entry point (the command
line before the command runs, the ML backend server when its app is built from LOG_LEVEL), never by the
code that only logs.

One format for both: ``time LEVEL logger: message``. Label Studio's SDK logs every URL it resolves at
INFO (signed URLs included) and urllib3 logs request lines at DEBUG: both are kept at WARNING or above, so
no log level shows a token."""
from __future__ import annotations

import argparse
import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("label_studio_sdk", "urllib3")  # loggers that print URLs with their signatures


def cli_level(args: argparse.Namespace) -> str:
    """``--log-level`` when given, else INFO with ``-v/--verbose``, else the command's
    ``default_log_level`` (set with ``parser.set_defaults``; INFO when it sets none)."""
    if getattr(args, "log_level", None):
        return str(args.log_level).upper()
    if getattr(args, "verbose", False):
        return "INFO"
    return str(getattr(args, "default_log_level", "INFO")).upper()


def setup_logging(level: str | int) -> None:
    """Root logger at ``level`` with one stderr handler (nothing when the process already has handlers: a
    host application or pytest owns logging then), and the QUIET loggers at WARNING or above."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
