"""The calibration file ``label-factory calibrate`` writes next to the project YAML (``<name>.calibration.yaml``).

``load_project`` merges its ``thresholds`` (``filter`` and ``per_label``) into the YAML's, so the backend,
``run`` and ``predict`` use them and the model_version changes with them; the YAML itself, with its
comments and order, is never rewritten. Deleting the file goes back to the YAML's thresholds. A new
calibration keeps the entries of labels it did not calibrate this time (refused ones keep what they had).
The ``calibration`` section records what the thresholds were chosen for and what to expect of them; nothing
reads it back. Written atomically: a reader (a backend worker) sees the old file or the new one."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import yaml

from pipeline.atomic import save_text
from pipeline.config import calibration_path

log = logging.getLogger(__name__)


def _current(path: Path) -> dict:
    """What the file holds now ({} when there is none or it cannot be read)."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return data if isinstance(data, dict) else {}
    except (OSError, yaml.YAMLError) as e:
        log.warning("%s: unreadable (%s); writing it anew", path, e)
        return {}


def thresholds_section(report: dict, path: Path) -> dict:
    """The file's ``thresholds``: its current entries, with this calibration's filter and labels."""
    old = _current(path).get("thresholds") or {}
    out: dict = {}
    new_filter = report["filter"]["new"]
    if new_filter is not None or "filter" in old:
        out["filter"] = new_filter if new_filter is not None else old["filter"]
    per_label = dict(old.get("per_label") or {})
    per_label.update({lab: r["written"] for lab, r in report["labels"].items() if r["written"]})
    if per_label:
        out["per_label"] = per_label
    return out


def _expected(report: dict) -> dict:
    out = {}
    for lab, r in report["labels"].items():
        if r["status"] != "calibrated":
            continue
        h = r["held_out"] or {}
        out[lab] = {"boxes": r["boxes"], "held_out_precision": h.get("precision"), "held_out_recall": h.get("recall"),
                    "in_sample": {k: r["fitted"][k] for k in ("precision", "recall")}}
    return out


def write(project_path, report: dict, source: str, versions: tuple[str, str],
          now: Optional[datetime] = None) -> Path:
    """Write the calibration file of ``project_path``; returns its path."""
    path = calibration_path(project_path)
    now = now or datetime.now(timezone.utc)
    body = {
        "thresholds": thresholds_section(report, path),
        "calibration": {
            "written_at": now.isoformat(timespec="seconds"), "source": source,
            "target_precision": report["target_precision"], "match_iou": report["match_iou"],
            "folds": report["folds"], "reviewed_tasks": report["reviewed_tasks"],
            "model_version": {"before": versions[0], "after": versions[1]},
            "expected": _expected(report),
            **({"guarantee": {"delta": report["guarantee"]["delta"], "precision_lower_bound": {
                lab: c["precision_lower_bound"] for lab, c in report["guarantee"]["labels"].items()
                if c["threshold"] is not None}}} if report.get("guarantee") else {}),
            "refused": {lab: r["reason"] for lab, r in report["labels"].items() if r["status"] != "calibrated"},
        },
    }
    old = _current(path)
    body.update({k: old[k] for k in ("route", "route_calibration") if k in old})  # the band stays as it was
    _save(path, project_path, body, now)
    return path


def write_route(project_path, bands: dict, found: dict, settings: dict, source: str, versions: tuple[str, str],
                now: Optional[datetime] = None) -> Path:
    """Write each label's routing band (``bands``: label -> RouteBand) into the calibration file of
    ``project_path`` under ``route.per_label``, keeping the file's thresholds and the bands of other labels."""
    path = calibration_path(project_path)
    now = now or datetime.now(timezone.utc)
    old = _current(path)
    per_label = dict(((old.get("route") or {}).get("per_label")) or {})
    per_label.update({lab: b.model_dump(exclude_none=True) for lab, b in bands.items()})
    body = {k: old[k] for k in ("thresholds", "calibration") if k in old}
    body["route"] = {"per_label": per_label}
    body["route_calibration"] = {"written_at": now.isoformat(timespec="seconds"), "source": source, **settings,
                                 "model_version": {"before": versions[0], "after": versions[1]}, "labels": found}
    _save(path, project_path, body, now)
    return path


def _save(path: Path, project_path, body: dict, now: datetime) -> None:
    text = (f"# Written by `label-factory calibrate` on {now:%Y-%m-%d %H:%M} UTC for {Path(project_path).name}.\n"
            "# Its thresholds replace the YAML's (filter; verify/grounding of the labels under per_label; the routing\n"
            "# band of the labels under route.per_label): the backend, `run` and `predict` read both files. Delete\n"
            "# this file to go back to the YAML's thresholds.\n"
            + yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
    save_text(path, text)
