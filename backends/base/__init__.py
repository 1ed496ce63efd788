"""The label-studio-ml 2.x backend contract (``LabelStudioMLBase``, ``ModelResponse``, ``init_app``).

Same class, method and route names and semantics as upstream ``label_studio_ml`` 2.x, so a
``model.py`` written for it runs here by changing its imports to ``backends.base``."""
from backends.base.api import init_app
from backends.base.errors import ClientError, ExtraParamsError, LabelConfigError
from backends.base.model import LabelStudioMLBase, predict_fn, update_fn
from backends.base.response import ModelResponse

__all__ = ["ClientError", "ExtraParamsError", "LabelConfigError", "LabelStudioMLBase", "ModelResponse", "init_app",
           "predict_fn", "update_fn"]
