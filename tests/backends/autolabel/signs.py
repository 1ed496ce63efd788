"""The scripted world of the autolabel backend tests: the project, the grounder's boxes per query, the token."""
from __future__ import annotations

TOKEN = "feedc0ffee0123456789abcdef0123456789abcd"


PROJECT = {
    "project_name": "signs", "target_object": "stop sign", "label": "Stop Sign",
    "falcon_queries": {"Stop Sign": ["stop sign"], "Yield": ["yield sign"], "Speed": ["speed limit sign"]},
    "thresholds": {"filter": 0.5, "grounding": 0.1, "verify": 0.5},
}


BOXES = {"stop sign": [(0.1, 0.2, 0.5, 0.6, 0.9)], "yield sign": [(0.6, 0.1, 0.9, 0.4, 0.7)],
         "speed limit sign": [(0.0, 0.0, 0.2, 0.2, 0.6)], "red thing": [(0.25, 0.25, 0.75, 0.75, 0.8)]}
