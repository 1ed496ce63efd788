"""``init_app(model_class)``: the Flask app Label Studio talks to (label-studio-ml 2.x routes).

/setup, /predict, /webhook, /health (and /), /metrics. HTTP basic auth when BASIC_AUTH_USER and
BASIC_AUTH_PASS are set. Every error is JSON with a ``reason``; tracebacks go to the log only.
Request bodies and headers are never logged: /setup carries a Label Studio token."""
from __future__ import annotations

import hmac
import json
import logging
import os
import time
from typing import Optional

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

from backends.base.cache import get_cache
from backends.base.model import LabelStudioMLBase
from backends.base.response import ModelResponse

log = logging.getLogger(__name__)


class RequestError(BadRequest):
    """A request Label Studio (or a person with curl) got wrong; answered 400 with the reason."""


def _error(status: int, reason: str, **extra) -> Response:
    resp = jsonify({"status": "error", "code": status, "reason": reason, **extra})
    resp.status_code = status
    return resp


def _body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise RequestError("request body must be a JSON object (Content-Type: application/json)")
    return data


def _project_id(value) -> str:
    """Label Studio sends ``"<id>.<created_at timestamp>"``; the id is the part before the dot."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value).split(".", 1)[0] if value not in (None, "") else ""


def _same(a: Optional[str], b: str) -> bool:
    return hmac.compare_digest((a or "").encode(), b.encode())


def init_app(model_class, basic_auth_user: Optional[str] = None, basic_auth_pass: Optional[str] = None) -> Flask:
    if not (isinstance(model_class, type) and issubclass(model_class, LabelStudioMLBase)):
        raise ValueError(f"{model_class!r} is not a subclass of LabelStudioMLBase")
    user = basic_auth_user or os.getenv("BASIC_AUTH_USER")
    password = basic_auth_pass or os.getenv("BASIC_AUTH_PASS")
    basic_auth = (user, password) if user and password else None

    app = Flask(model_class.__module__)
    app.config["MODEL_CLASS"] = model_class
    app.json.sort_keys = False

    @app.before_request
    def _check_auth():
        if basic_auth is None:
            return None
        auth = request.authorization
        given = (auth.username, auth.password) if auth is not None and auth.type == "basic" else ("", "")
        # both compared (constant time) even when the user name is already wrong
        ok = _same(given[0], basic_auth[0]) & _same(given[1], basic_auth[1])
        if not ok or auth is None:
            resp = _error(401, "authentication required: HTTP basic auth with BASIC_AUTH_USER / BASIC_AUTH_PASS")
            resp.headers["WWW-Authenticate"] = 'Basic realm="label-factory ML backend"'
            return resp
        return None

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        return _error(e.code or 500, e.description or e.name)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, f"{type(e).__name__}: {e}")

    @app.post("/predict")
    def predict():
        data = _body()
        tasks = data.get("tasks")
        if not isinstance(tasks, list):
            raise RequestError("'tasks' must be a list of Label Studio tasks")
        params = dict(data.get("params") or {})
        context = params.pop("context", None) or {}
        t0 = time.perf_counter()
        model = model_class(project_id=_project_id(data.get("project")), label_config=data.get("label_config"))
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
        body["model_version"] = body["model_version"] or model.model_version
        log.info("predict: project=%s tasks=%d interactive=%s in %.2fs", model.project_id, len(tasks), bool(context),
                 time.perf_counter() - t0)
        return jsonify(body)

    @app.post("/setup")
    def setup():
        data = _body()
        project_id = _project_id(data.get("project"))
        extra = data.get("extra_params")
        if extra not in (None, "", {}):
            # stored before the model is built, so setup() already sees this project's params
            get_cache()[project_id, "extra_params"] = json.dumps(extra)
        model = model_class(project_id=project_id, label_config=data.get("schema"))
        return jsonify({"model_version": model.get("model_version")})

    @app.post("/webhook")
    def webhook():
        data = _body()
        event = data.pop("action", None)
        if event not in model_class.TRAIN_EVENTS:
            return jsonify({"status": "Unknown event", "event": event}), 200
        project = data.get("project") or {}
        if not isinstance(project, dict) or "id" not in project:
            raise RequestError("webhook payload needs project.id")
        model = model_class(project_id=str(project["id"]), label_config=project.get("label_config"))
        result = model.fit(event, data)
        return jsonify({"result": result, "status": "ok"}), 201

    @app.get("/")
    @app.get("/health")
    def health():
        return jsonify({"status": "UP", "model_class": model_class.__name__})

    @app.get("/metrics")
    def metrics():
        return jsonify({})

    return app
