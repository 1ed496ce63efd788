"""Errors a request caused, as opposed to errors of the backend: the app answers them 4xx, not 500.

A model class raises ``ClientError`` (or a subclass) when what Label Studio sent cannot be served:
the reason is the answer's ``detail``, the status is the class's ``status``. Any other exception
is the backend's fault and answers 500. This module must not import Flask: model code raises
these without knowing about HTTP."""
from __future__ import annotations


class ClientError(ValueError):
    """The request cannot be served as sent (answered ``status``, 400 unless a subclass says otherwise)."""

    status = 400


class LabelConfigError(ClientError):
    """The labeling config is not valid XML, or has no place for what the model predicts."""

    status = 422


class ExtraParamsError(ClientError):
    """The connection's extra params are not a JSON object, or name something the model cannot use."""

    status = 422
