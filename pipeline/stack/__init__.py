"""`label-factory up`: Label Studio + the ML backend + a project with sample images, on this machine."""
from pipeline.stack.cli import add_parser  # noqa: F401
