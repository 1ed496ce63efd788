"""Importer: gather web images per project YAML bucket, download + dedupe them under
``data_root/<bucket>/`` with a manifest, and import them as tasks into a Label Studio project.

Entry point: ``label-factory import`` (via :mod:`pipeline.importer.cli`)."""
from pipeline.importer.records import Candidate, Summary
from pipeline.importer.runner import ImportOptions, run_import

__all__ = ["Candidate", "Summary", "ImportOptions", "run_import"]
