"""Model label names -> labels of a Label Studio control tag (``predicted_values`` aware)."""
from __future__ import annotations

from typing import Iterable


def _aliases(label_tag) -> list[str]:
    raw = (label_tag.attr or {}).get("predicted_values", "") or ""
    return [a.strip() for a in raw.split(",") if a.strip()]


def build_label_map(control, names: Iterable[str]) -> dict[str, str]:
    """Map each of ``names`` to a label of ``control`` (a LabelInterface control tag).

    Order of preference: a ``predicted_values`` alias (exact, then case-insensitive), the label's
    own value (exact, then case-insensitive). Unmatched names are left out."""
    labels = dict(getattr(control, "labels_attrs", None) or {})
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    for ls_label, tag in labels.items():
        for alias in _aliases(tag):
            exact.setdefault(alias, ls_label)
            folded.setdefault(alias.casefold(), ls_label)
    own_exact = {lab: lab for lab in labels}
    own_folded: dict[str, str] = {}
    for lab in labels:
        own_folded.setdefault(lab.casefold(), lab)
    out = {}
    for name in names:
        for table, key in ((exact, name), (folded, name.casefold()), (own_exact, name), (own_folded, name.casefold())):
            if key in table:
                out[name] = table[key]
                break
    return out
