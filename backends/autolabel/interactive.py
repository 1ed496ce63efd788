"""What a person gave in interactive mode: a typed text prompt and/or rectangles they drew."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class UserBox:
    value: dict  # Label Studio percent x/y/width/height (+ rotation)
    label: Optional[str]  # the config label they chose, if any


@dataclass
class Interaction:
    text: Optional[str] = None
    boxes: list[UserBox] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.text) or bool(self.boxes)


def parse_context(context: Optional[dict], prompt_name: Optional[str], from_name: str) -> Interaction:
    """Read ``context["result"]`` as Label Studio sends it for interactive pre-annotation."""
    out = Interaction()
    for item in (context or {}).get("result") or []:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("type", "")).lower()
        value = item.get("value") or {}
        per_region = any(k in value for k in ("x", "y", "width", "height"))  # names a box: not a prompt
        if kind == "textarea" and not per_region and \
                (prompt_name is None or item.get("from_name") in (prompt_name, None)):
            texts = value.get("text") or []
            texts = [texts] if isinstance(texts, str) else texts
            text = " ".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
            if text:
                out.text = text
        elif kind in ("rectanglelabels", "rectangle") and all(k in value for k in ("x", "y", "width", "height")):
            if kind == "rectanglelabels" and item.get("from_name") not in (from_name, None):
                continue  # another RectangleLabels control's region
            labels = value.get("rectanglelabels") or []
            out.boxes.append(UserBox(value=value, label=labels[0] if labels else None))
    return out
