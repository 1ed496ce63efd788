"""``ModelResponse``: what ``predict()`` may return instead of a plain list (upstream 2.x shape).

``errors`` is our addition: per-task failures (``{"task": id, "reason": str}``) returned next
to the predictions so the caller sees why a task got none; Label Studio ignores the field."""
from __future__ import annotations

from typing import Any, List, Optional, Union

from label_studio_sdk.label_interface.objects import PredictionValue
from pydantic import BaseModel, ConfigDict, Field

# One prediction or several per task; an empty list means "no prediction for this task".
SingleTaskPredictions = Union[List[PredictionValue], PredictionValue]


class ModelResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_version: Optional[str] = None
    predictions: List[SingleTaskPredictions]
    errors: List[dict[str, Any]] = Field(default_factory=list)

    def has_model_version(self) -> bool:
        return bool(self.model_version)

    def update_predictions_version(self) -> None:
        """Give every prediction without a model_version the response's one."""
        for per_task in self.predictions:
            for p in per_task if isinstance(per_task, list) else [per_task]:
                if not p.model_version:
                    p.model_version = self.model_version

    def set_version(self, version: str) -> None:
        self.model_version = version
        self.update_predictions_version()
