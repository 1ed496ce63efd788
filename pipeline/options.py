"""Command-line options several commands share, kept free of heavy imports so that ``label-factory --help``
and each command's ``--help`` stay fast: ``--no-cache`` (the answer cache, ``pipeline/answer_cache.py``)."""
from __future__ import annotations


def add_no_cache(parser) -> None:
    """The ``--no-cache`` option of the commands that run models."""
    parser.add_argument("--no-cache", action="store_true",
                        help="ask the models again instead of reusing answers from MODEL_DIR/answers.db "
                             "(same as LF_ANSWER_CACHE=0)")


def apply_no_cache(args) -> None:
    """``--no-cache``: the answer cache off for this process (``answer_cache.enabled`` reads LF_ANSWER_CACHE)."""
    if getattr(args, "no_cache", False):
        from pipeline.settings import set_in_process
        set_in_process("LF_ANSWER_CACHE", "0")
