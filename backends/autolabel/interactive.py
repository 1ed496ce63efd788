"""What a person gave in interactive mode: a typed text prompt, or the one rectangle they just drew.

Label Studio's frontend (1.23) calls the backend when a region is finished with a smart tool
(``regionFinishedDrawing``) and sends as ``context.result`` every region of the annotation with the
same type, label and image as the finished one (``getConnectedDynamicRegions``), serialized in the
annotation's order: regions loaded from predictions (``origin: "prediction"``, or
``"prediction-changed"`` once moved), suggestions accepted earlier, rectangles drawn earlier and,
last, the one just drawn. Only that one is answered: answering the others would suggest copies of
regions the annotation already has. A text prompt (a TextArea that is not per-region) is answered
as a grounding query."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

PREDICTED = ("prediction", "prediction-changed")  # region origins of predicted regions


@dataclass
class UserBox:
    value: dict  # Label Studio percent x/y/width/height (+ rotation)
    label: Optional[str]  # the config label they chose, if any


@dataclass
class Interaction:
    text: Optional[str] = None
    boxes: list[UserBox] = field(default_factory=list)  # the rectangle just drawn (at most one)
    regions: int = 0  # regions in the context (what Label Studio sent, answered or not)

    def __bool__(self) -> bool:
        return bool(self.text) or bool(self.boxes)

    def describe(self) -> str:
        """For the log: what was asked."""
        asked = [f"prompt {self.text!r}"] if self.text else []
        asked += [f"drawn box {b.label or '(no label)'} at {_where(b.value)}" for b in self.boxes]
        return (", ".join(asked) or "nothing to answer") + f" ({self.regions} region(s) in the context)"


def _where(value: dict) -> str:
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        return f"x={x:.1f}% y={y:.1f}% w={w:.1f}% h={h:.1f}%"
    except (TypeError, ValueError, KeyError):
        return "?"


def _is_box(value: dict) -> bool:
    return all(k in value for k in ("x", "y", "width", "height"))


def parse_context(context: Optional[dict], prompt_name: Optional[str], from_name: str) -> Interaction:
    """Read ``context["result"]`` as Label Studio sends it for interactive pre-annotation."""
    out = Interaction()
    drawn = []
    for item in (context or {}).get("result") or []:
        if not isinstance(item, dict):
            continue
        out.regions += 1
        kind = str(item.get("type", "")).lower()
        value = item.get("value") or {}
        if kind == "textarea" and not _is_box(value) and \
                (prompt_name is None or item.get("from_name") in (prompt_name, None)):
            texts = value.get("text") or []
            texts = [texts] if isinstance(texts, str) else texts
            text = " ".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
            if text:
                out.text = text
        elif kind in ("rectanglelabels", "rectangle") and _is_box(value):
            if kind == "rectanglelabels" and item.get("from_name") not in (from_name, None):
                continue  # another RectangleLabels control's region
            if item.get("origin") in PREDICTED:
                continue  # already on the image as a prediction
            labels = value.get("rectanglelabels") or []
            drawn.append(UserBox(value=value, label=labels[0] if labels else None))
    out.boxes = drawn[-1:]  # the newest: the one just drawn
    return out


def is_interactive(context: Optional[dict]) -> bool:
    """A call from the labeling screen (with regions or a prompt), not a batch prediction."""
    return bool((context or {}).get("result"))
