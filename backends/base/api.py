"""``init_app(model_class)``: the Flask app Label Studio talks to (label-studio-ml 2.x routes).

/setup, /predict, /webhook, /health (and /), /metrics; ``_server`` is the app of the base class
itself, as upstream. HTTP basic auth on every route when BASIC_AUTH_USER and BASIC_AUTH_PASS
are set. Errors are JSON in upstream's shape, ``{"status": <code>, "detail": <reason>,
"result": {...}}``: a ``ClientError`` (bad body, params, labeling config or extra params) is
answered with its 4xx code, a busy worker 503 with Retry-After, anything else 500 with its
traceback in the log only. A JSON body nested deeper than ``MAX_JSON_DEPTH`` is a 400 (extra
params: a 422), so nothing downstream has to recurse through it. /predict is admitted by model slots
(``worker.py``). Request bodies and headers are never logged: /setup carries a Label Studio
token."""
from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from typing import Optional

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from backends.base import settings
from backends.base.errors import ClientError, ExtraParamsError
from backends.base.model import LabelStudioMLBase, extra_params_on_trial
from backends.base.response import ModelResponse
from backends.base.worker import Busy, Worker, model_slot, model_slots, predict_limit_for, slot_wait

log = logging.getLogger(__name__)

_WORKER = "label_factory.worker"
_ABSENT = object()
MAX_JSON_DEPTH = 100  # Label Studio's tasks, contexts and params nest about ten levels


def _answer(status: int, detail: str, result: Optional[dict] = None) -> Response:
    body = {"status": status, "detail": detail}
    if result is not None:
        body["result"] = result
    resp = jsonify(body)
    resp.status_code = status
    return resp


def _too_deep(value, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON) nests lists and objects deeper than ``limit``; without recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _json_nested(what: str, error=ClientError) -> ClientError:
    return error(f"{what}: lists and objects nested deeper than {MAX_JSON_DEPTH} levels")


def _body() -> dict:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # the JSON decoder's own limit (~1,000 levels)
        raise _json_nested("the request body") from None
    if not isinstance(data, dict):
        raise ClientError("request body must be a JSON object (Content-Type: application/json)")
    if _too_deep(data):
        raise _json_nested("the request body")
    return data


def _project_id(value) -> str:
    """Label Studio sends ``"<id>.<created_at timestamp>"``; the id is the part before the dot."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value).split(".", 1)[0] if value not in (None, "") else ""


def _label_config(value) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise ClientError("the labeling config must be a string of XML")
    return value


def _tasks(data: dict) -> list:
    tasks = data.get("tasks")
    if isinstance(tasks, dict):  # one task sent on its own
        return [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise ClientError("'tasks' must be a list of Label Studio tasks (JSON objects)")
    return tasks


def _predict_params(data: dict) -> tuple[dict, dict]:
    """(context, the other params) from ``params``; both must be JSON objects."""
    params = data.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ClientError(f"'params' must be a JSON object, got {type(params).__name__}")
    params = dict(params)
    context = params.pop("context", None) or {}
    if not isinstance(context, dict):
        raise ClientError(f"'params.context' must be a JSON object, got {type(context).__name__}")
    return context, params


def _extra_params(data: dict):
    """The connection's extra params as a dict ({} when emptied), or _ABSENT when not sent.
    Label Studio sends them as an object or as a JSON string."""
    if "extra_params" not in data:
        return _ABSENT
    raw = data["extra_params"]
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise ExtraParamsError(f"extra params are not valid JSON: {e}") from None
        except RecursionError:
            raise _json_nested("the extra params", ExtraParamsError) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ExtraParamsError(f"extra params must be a JSON object, got {type(raw).__name__}")
    if _too_deep(raw):
        raise _json_nested("the extra params", ExtraParamsError)
    return raw


def _same(a: Optional[str], b: str) -> bool:
    return hmac.compare_digest((a or "").encode(), b.encode())


def worker_of(app: Flask) -> Worker:
    return app.extensions[_WORKER]


def on_worker_start(app: Flask, threads: Optional[int], warm_up: bool = True) -> None:
    """A server process starts serving ``app`` with ``threads`` request threads: at most
    ``predict_limit_for(threads)`` /predict in it at once, and warm the model class up in the
    background. An app that ``init_app`` did not build is left alone."""
    worker = getattr(app, "extensions", {}).get(_WORKER)
    if worker is None:
        return
    worker.predict_limit = predict_limit_for(threads)
    log.info("serving %s on %s threads: at most %s /predict in progress, %d model slots, a request waits up to "
             "%g s for its first", app.config["MODEL_CLASS"].__name__, threads, worker.predict_limit,
             model_slots().size, slot_wait())
    if warm_up:
        worker.start_warm_up(app.config["MODEL_CLASS"])


def init_app(model_class, basic_auth_user: Optional[str] = None, basic_auth_pass: Optional[str] = None) -> Flask:
    if not (isinstance(model_class, type) and issubclass(model_class, LabelStudioMLBase)):
        raise ValueError(f"{model_class!r} is not a subclass of LabelStudioMLBase")
    contract = settings.current()
    user = basic_auth_user or contract.basic_auth_user
    password = basic_auth_pass or contract.basic_auth_pass
    basic_auth = (user, password) if user and password else None

    app = Flask(model_class.__module__)
    app.config["MODEL_CLASS"] = model_class
    app.json.sort_keys = False
    worker = app.extensions[_WORKER] = Worker(predict_limit_for(None))

    @app.before_request
    def _check_auth():
        if basic_auth is None:
            return None
        auth = request.authorization
        given = (auth.username, auth.password) if auth is not None and auth.type == "basic" else ("", "")
        # both compared (constant time) even when the user name is already wrong
        ok = _same(given[0], basic_auth[0]) & _same(given[1], basic_auth[1])
        if not ok or auth is None:
            resp = _answer(401, "authentication required: HTTP basic auth with BASIC_AUTH_USER / BASIC_AUTH_PASS")
            resp.headers["WWW-Authenticate"] = 'Basic realm="label-factory ML backend"'
            return resp
        return None

    @app.errorhandler(ClientError)
    def _client_error(e: ClientError):
        log.warning("%s %s: %s %s: %s", request.method, request.path, e.status, type(e).__name__, e)
        return _answer(e.status, str(e), {"error": type(e).__name__})

    @app.errorhandler(Busy)
    def _busy(e: Busy):
        resp = _answer(503, str(e), {"retry_after": e.retry_after})
        resp.headers["Retry-After"] = str(e.retry_after)
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        return _answer(e.code or 500, e.description or e.name)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("%s %s failed", request.method, request.path)
        return _answer(500, f"{type(e).__name__}: {e}", {"error": type(e).__name__})

    @app.post("/predict")
    def predict():
        data = _body()
        tasks = _tasks(data)
        context, params = _predict_params(data)
        label_config = _label_config(data.get("label_config"))
        t0 = time.perf_counter()
        with worker.admit():
            model = model_class(project_id=_project_id(data.get("project")), label_config=label_config)
            with contextlib.nullcontext() if model_class.TAKES_MODEL_SLOTS else model_slot():
                response = model.predict(tasks, context=context, **params)
        body = {"results": [], "model_version": None}
        if isinstance(response, ModelResponse):
            if not response.has_model_version():
                if model.model_version:
                    response.set_version(str(model.model_version))
            else:
                response.update_predictions_version()
            dumped = response.model_dump(mode="json")
            body["results"] = dumped["predictions"]
            body["model_version"] = dumped.get("model_version")
            if dumped.get("errors"):
                body["errors"] = dumped["errors"]
        elif isinstance(response, dict):
            body["results"] = response.get("predictions", response.get("results", []))
        elif response is not None:
            body["results"] = list(response)
        if not body["model_version"] and model.model_version:
            body["model_version"] = str(model.model_version)
        log.info("predict: project=%s tasks=%d interactive=%s in %.2fs", model.project_id, len(tasks), bool(context),
                 time.perf_counter() - t0)
        return jsonify(body)

    @app.post("/setup")
    def setup():
        data = _body()
        project_id = _project_id(data.get("project"))
        label_config = _label_config(data.get("schema"))
        extra = _extra_params(data)
        if extra is _ABSENT:
            model = model_class(project_id=project_id, label_config=label_config)
        else:
            # built with the new params first: params it cannot work with are refused, not stored
            with extra_params_on_trial(extra):
                model = model_class(project_id=project_id, label_config=label_config)
            model.set_extra_params(extra)
        return jsonify({"model_version": model.get("model_version")})

    @app.post("/webhook")
    def webhook():
        data = _body()
        event = data.pop("action", None)
        if event not in model_class.TRAIN_EVENTS:
            return jsonify({"status": "Unknown event", "event": event}), 200
        project = data.get("project") or {}
        if not isinstance(project, dict) or "id" not in project:
            raise ClientError("webhook payload needs project.id")
        model = model_class(project_id=str(project["id"]),
                            label_config=_label_config(project.get("label_config")))
        result = model.fit(event, data)
        return jsonify({"result": result, "status": "ok"}), 201

    @app.get("/")
    @app.get("/health")
    def health():
        # Label Studio counts any 2xx JSON answer as connected: "loading" keeps it connected
        return jsonify({"status": "loading" if worker.loading else "UP", "model_class": model_class.__name__})

    @app.get("/metrics")
    def metrics():
        return jsonify({**model_class.metrics(), "worker": worker.metrics()})

    return app


# upstream's module-level app (``from label_studio_ml.api import _server``), serving the base class
_server = init_app(LabelStudioMLBase)
