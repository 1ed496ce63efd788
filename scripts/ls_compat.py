"""Label Studio compatibility run: the end-to-end tests that talk to Label Studio, against older releases.

For the last patch release of each Label Studio minor in a range (default 1.18 to 1.23) that pip can
install, one virtualenv is made (cached: ``CACHE/ls-VERSION``), and the end-to-end subset of the tests
runs against it, one version after the other (the tests find Label Studio through LABEL_STUDIO_BIN).
Prints, and writes as Markdown with ``--out``, a table version x area: pass, or what failed.

    .venv/bin/python scripts/ls_compat.py --cache ~/.cache/label-factory            # 1.18 .. 1.23
    .venv/bin/python scripts/ls_compat.py --cache ~/.cache/label-factory 1.20 1.23  # these minors
    .venv/bin/python scripts/ls_compat.py --cache ~/.cache/label-factory --install-only
    .venv/bin/python scripts/ls_compat.py --cache ~/.cache/label-factory --report   # the last runs' table

Not part of the test suite or CI: each install takes minutes and each run starts Label Studio several
times. docs/guides/label-studio-versions.md holds the table of the last run."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The end-to-end subset, in the order it runs (the autolabel backend's tests share one connected project, and the
# last of them moves it to another model_version); a parametrized test counts with all its cases.
AUTOLABEL = "tests/backends/autolabel/test_model_labelstudio.py"
IDENTIFY = "tests/backends/identify/test_model_labelstudio.py"
IMPORTER = "tests/pipeline/importer/test_labelstudio.py"
TESTS = [
    f"{AUTOLABEL}::test_retrieve_predictions_stores_one_prediction_per_task",
    f"{AUTOLABEL}::test_project_model_version_follows_the_backend_and_the_score_column_sorts",
    f"{AUTOLABEL}::test_interactive_context_prompt_and_drawn_rectangle",
    f"{AUTOLABEL}::test_retrieve_again_asks_only_for_tasks_without_the_current_version",
    f"{IDENTIFY}::test_annotation_webhook_then_prediction",
    f"{IDENTIFY}::test_a_late_or_repeated_webhook_changes_nothing",
    f"{IMPORTER}::test_upload_with_personal_access_token",
    f"{IMPORTER}::test_import_into_label_studio",
]
# area -> the tests (names in TESTS) that cover it
AREAS: dict[str, list[str]] = {
    "Retrieve Predictions": ["test_retrieve_predictions_stores_one_prediction_per_task",
                             "test_retrieve_again_asks_only_for_tasks_without_the_current_version"],
    "model_version / score column": ["test_project_model_version_follows_the_backend_and_the_score_column_sorts"],
    "interactive context": ["test_interactive_context_prompt_and_drawn_rectangle"],
    "webhooks reach fit": ["test_annotation_webhook_then_prediction",
                           "test_a_late_or_repeated_webhook_changes_nothing"],
    "personal access and legacy tokens": ["test_upload_with_personal_access_token", "test_import_into_label_studio"],
}


def last_patches(first: str, last: str) -> list[str]:
    """The newest release of each minor from ``first`` to ``last`` (``1.18``) that pip's index lists."""
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "label-studio"],
                         capture_output=True, text=True, check=True).stdout
    return newest_per_minor(re.search(r"Available versions: (.*)", out).group(1).split(", "), first, last)


def newest_per_minor(listed: list[str], first: str, last: str) -> list[str]:
    """Of the release numbers ``listed``, the newest final release (no .postN, rc) of each minor from ``first``
    to ``last``, oldest minor first."""
    lo, hi = (tuple(int(p) for p in v.split(".")[:2]) for v in (first, last))
    newest: dict[tuple, tuple] = {}
    for v in listed:
        m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", v.strip())
        if m:
            key, full = (int(m[1]), int(m[2])), tuple(int(p) for p in m.groups())
            if lo <= key <= hi and full > newest.get(key, (-1,)):
                newest[key] = full
    return [".".join(map(str, newest[k])) for k in sorted(newest)]


def install(version: str, cache: Path, python: str) -> tuple[Path | None, str]:
    """``cache/ls-VERSION`` with label-studio==VERSION in it (made once; a ``.installed`` file marks a
    finished install); returns (its label-studio executable or None, what happened)."""
    venv = cache / f"ls-{version}"
    binary, marker, log = venv / "bin" / "label-studio", venv / ".installed", cache / f"ls-{version}.install.log"
    if marker.exists() and binary.exists():
        return binary, "cached"
    t0 = time.monotonic()
    with open(log, "w") as fh:
        ok = (subprocess.run([python, "-m", "venv", "--clear", str(venv)], stdout=fh, stderr=fh).returncode == 0
              and subprocess.run([str(venv / "bin" / "pip"), "install", "-U", "pip"], stdout=fh,
                                  stderr=fh).returncode == 0
              and subprocess.run([str(venv / "bin" / "pip"), "install", f"label-studio=={version}"], stdout=fh,
                                 stderr=fh).returncode == 0)
    if not ok or not binary.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return None, "does not install: " + " / ".join(tail)
    marker.write_text(version + "\n")
    return binary, f"installed in {time.monotonic() - t0:.0f}s"


def run_tests(binary: Path, version: str, results: Path) -> float:
    """TESTS against ``binary`` (pytest's log, JUnit XML and temporary directory, which holds Label Studio's and
    the backend's logs, kept in ``results``); returns the seconds it took."""
    env = {**os.environ, "LABEL_STUDIO_BIN": str(binary), "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    with open(results / f"ls-{version}.log", "w") as fh:
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={results / f'ls-{version}.xml'}", f"--basetemp={results / f'ls-{version}.tmp'}",
                        *TESTS], cwd=REPO, env=env, stdout=fh, stderr=fh)
    return time.monotonic() - t0


def outcomes(junit: Path) -> dict[str, str]:
    """Test name -> 'pass' or what failed (per case of a parametrized test), from a run's JUnit XML."""
    outcome = {n.split("::")[1]: "not run" for n in TESTS}
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            name, param = case.get("name"), ""
            if "[" in name:
                name, param = name.split("[", 1)
                param = f"[{param}"
            if name not in outcome:
                continue
            bad = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
            if bad is None:
                outcome[name] = "pass" if outcome[name] in ("pass", "not run") else outcome[name]
            else:
                first = (bad.get("message") or "").strip().splitlines()
                what = f"{bad.tag}{param}: {first[0][:200] if first else '?'}"
                outcome[name] = what if outcome[name] in ("pass", "not run") else f"{outcome[name]}; {what}"
    return outcome


def area_cell(outcome: dict[str, str], area: str) -> str:
    bad = [f"{n}: {outcome[n]}" for n in AREAS[area] if outcome[n] != "pass"]
    return "pass" if not bad else "FAIL (" + "; ".join(bad) + ")"


def table(rows: list[tuple[str, str, dict[str, str] | None]]) -> str:
    head = "| Label Studio | " + " | ".join(AREAS) + " |"
    lines = [head, "|" + "---|" * (len(AREAS) + 1)]
    for version, note, outcome in rows:
        cells = [area_cell(outcome, a) for a in AREAS] if outcome else [note] * len(AREAS)
        lines.append(f"| {version} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("minors", nargs="*", help="minors to run (e.g. 1.20 1.23); default: --first to --last")
    ap.add_argument("--cache", type=Path, required=True, help="directory for the virtualenvs (ls-VERSION)")
    ap.add_argument("--first", default="1.18")
    ap.add_argument("--last", default="1.23")
    ap.add_argument("--python", default=sys.executable, help="interpreter the virtualenvs are made with")
    ap.add_argument("--install-only", action="store_true")
    ap.add_argument("--report", action="store_true",
                    help="install and run nothing: the table of each version's last run (in CACHE/results)")
    ap.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = ap.parse_args(argv)
    cache = args.cache.expanduser().resolve()
    results = cache / "results"
    results.mkdir(parents=True, exist_ok=True)
    versions = last_patches(args.first, args.last)
    if args.minors:
        versions = [v for v in versions if v.rsplit(".", 1)[0] in args.minors]
    print(f"Label Studio versions: {', '.join(versions)}; virtualenvs in {cache}", flush=True)
    rows = []
    for version in versions:
        if args.report:
            junit, log = results / f"ls-{version}.xml", cache / f"ls-{version}.install.log"
            if junit.exists():
                rows.append((version, "", outcomes(junit)))
            elif log.exists() and not (cache / f"ls-{version}" / ".installed").exists():
                rows.append((version, f"no finished install (log: {log})", None))
            continue
        binary, note = install(version, cache, args.python)
        print(f"{version}: {note}", flush=True)
        if binary is None or args.install_only:
            rows.append((version, note, None))
            continue
        seconds = run_tests(binary, version, results)
        outcome = outcomes(results / f"ls-{version}.xml")
        print(f"{version}: tests took {seconds:.0f}s (log: {results / f'ls-{version}.log'})", flush=True)
        for node, result in outcome.items():
            print(f"  {'pass' if result == 'pass' else 'FAIL':4} {node}" + (f"  {result}" if result != "pass" else ""),
                  flush=True)
        rows.append((version, note, outcome))
    if args.install_only:
        return 0 if all(not note.startswith("does not install") for _, note, _ in rows) else 1
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if all(o and all(r == "pass" for r in o.values()) for _, _, o in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
