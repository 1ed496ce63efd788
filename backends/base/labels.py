"""``build_label_map``: model label names -> labels of a Label Studio control tag, as upstream's
``LabelStudioMLBase.build_label_map`` documents it: a label's ``predicted_values`` aliases first, then its
own value, exact before case-insensitive; names that match nothing are left out.

The contract carries its own copy (it imports no application code); label-factory's output layer
(``pipeline.labelstudio.controls``) maps its labels the same way and is tested against this one."""
from __future__ import annotations

from typing import Iterable


def build_label_map(control, names: Iterable[str]) -> dict[str, str]:
    tiers: list[dict[str, str]] = [{}, {}, {}, {}]  # alias, alias folded, value, value folded
    for label, tag in (getattr(control, "labels_attrs", None) or {}).items():
        raw = (getattr(tag, "attr", None) or {}).get("predicted_values") or ""
        for alias in (a.strip() for a in raw.split(",")):
            if alias:
                tiers[0].setdefault(alias, label)
                tiers[1].setdefault(alias.casefold(), label)
        tiers[2].setdefault(label, label)
        tiers[3].setdefault(label.casefold(), label)
    out = {}
    for name in names:
        found = next((t[k] for t, k in zip(tiers, (name, name.casefold()) * 2) if k in t), None)
        if found is not None:
            out[name] = found
    return out
