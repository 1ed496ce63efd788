"""What a person gave in interactive mode (Label Studio's smart tools with Auto-Annotation on).

Label Studio's frontend (1.23) calls the backend when a region is finished with a smart tool
(``regionFinishedDrawing``) and sends as ``context.result`` every region of the annotation with the
same type, label and image as the finished one (``getConnectedDynamicRegions``), serialized in the
annotation's order: regions loaded from predictions (``origin: "prediction"``, or
``"prediction-changed"`` once moved), suggestions accepted earlier, regions drawn earlier and, last,
the one just drawn. Only that one is answered: answering the others would suggest copies of regions
the annotation already has.

* a rectangle drawn with an output rectangle tool, or a ``smartOnly`` one: verified (and, when the
  config has brush / polygon outputs, refined to the object's mask and its box);
* a rectangle drawn with an example tool (``find_similar="true"``): more objects like it;
* a keypoint (``KeyPointLabels``): the object under it. A negative click (Alt-click: ``is_positive``
  false) refines the object of the positive click before it, so the clicks from the last positive one
  of that tool to the end are sent together;
* a text typed into the prompt (a TextArea that is not per-region): grounded as a query.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipeline.labelstudio import PREDICTED_ORIGINS, Layout


@dataclass
class UserRegion:
    value: dict  # Label Studio percent geometry
    label: Optional[str]  # the config label they chose, if any
    from_name: str = ""
    positive: bool = True  # False: a negative click


@dataclass
class Interaction:
    text: Optional[str] = None
    boxes: list[UserRegion] = field(default_factory=list)  # the rectangle just drawn (at most one)
    clicks: list[UserRegion] = field(default_factory=list)  # the clicks on one object, the newest last
    example: Optional[UserRegion] = None  # an example rectangle: find more like it
    regions: int = 0  # regions in the context (what Label Studio sent, answered or not)

    def __bool__(self) -> bool:
        return bool(self.text) or bool(self.boxes) or bool(self.clicks) or self.example is not None

    def describe(self) -> str:
        """For the log: what was asked."""
        asked = [f"prompt {self.text!r}"] if self.text else []
        asked += [f"drawn box {b.label or '(no label)'} at {_where(b.value)}" for b in self.boxes]
        asked += [f"{'click' if c.positive else 'negative click'} {c.label or '(no label)'} at {_where(c.value)}"
                  for c in self.clicks]
        if self.example is not None:
            asked.append(f"example box {self.example.label or '(no label)'} at {_where(self.example.value)}")
        return (", ".join(asked) or "nothing to answer") + f" ({self.regions} region(s) in the context)"


def _where(value: dict) -> str:
    try:
        if "width" in value and "height" in value:
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
            return f"x={x:.1f}% y={y:.1f}% w={w:.1f}% h={h:.1f}%"
        return f"x={float(value['x']):.1f}% y={float(value['y']):.1f}%"
    except (TypeError, ValueError, KeyError):
        return "?"


def _is_box(value: dict) -> bool:
    return all(k in value for k in ("x", "y", "width", "height"))


def _text(value: dict) -> str:
    texts = value.get("text") or []
    texts = [texts] if isinstance(texts, str) else texts
    return " ".join(t.strip() for t in texts if isinstance(t, str) and t.strip())


def _label(item: dict, value: dict) -> Optional[str]:
    labels = value.get(str(item.get("type", "")).lower()) or value.get("labels") or []
    labels = [labels] if isinstance(labels, str) else labels
    return str(labels[0]) if labels else None


def person_drawn(context: Optional[dict]) -> list[dict]:
    """The context's regions a person drew or accepted, in the annotation's order (the one just drawn
    last): every dict of ``context["result"]`` that does not come from a prediction."""
    return [r for r in (context or {}).get("result") or []
            if isinstance(r, dict) and r.get("origin") not in PREDICTED_ORIGINS]


def parse_context(context: Optional[dict], layout: Layout) -> Interaction:
    """Read ``context["result"]`` as Label Studio sends it for interactive pre-annotation."""
    out = Interaction()
    examples = {c.name for c in layout.examples}
    box_tools = {o.name for o in layout.outputs if o.tag in ("rectanglelabels", "rectangle")} | \
        {c.name for c in layout.prompt_boxes}
    click_tools = {c.name for c in layout.clicks}
    drawn: list[tuple[str, UserRegion]] = []
    for item in (context or {}).get("result") or []:
        if not isinstance(item, dict):
            continue
        out.regions += 1
        kind = str(item.get("type", "")).lower()
        value = item.get("value") or {}
        name = item.get("from_name")
        if kind == "textarea" and not _is_box(value) and name in (layout.prompt, None):
            out.text = _text(value) or out.text
            continue
        if item.get("origin") in PREDICTED_ORIGINS:  # already on the image as a prediction (person_drawn)
            continue
        region = UserRegion(value, _label(item, value), str(name or ""), item.get("is_positive", True) is not False)
        if kind in ("rectanglelabels", "rectangle") and _is_box(value):
            if name in examples:
                drawn.append(("example", region))
            elif name in box_tools or (name is None and kind == "rectangle"):
                drawn.append(("box", region))
        elif kind in ("keypointlabels", "keypoint") and "x" in value and "y" in value and name in click_tools:
            drawn.append(("click", region))
    if not drawn:
        return out
    kind, last = drawn[-1]  # the one just drawn
    if kind == "example":
        out.example = last
    elif kind == "box":
        out.boxes = [last]
    else:
        clicks = []
        for k, r in reversed(drawn):
            if k != "click" or r.from_name != last.from_name:
                break
            clicks.insert(0, r)
            if r.positive:
                break
        out.clicks = clicks
    return out


def is_interactive(context: Optional[dict]) -> bool:
    """A call from the labeling screen (with regions or a prompt), not a batch prediction."""
    return bool((context or {}).get("result"))
