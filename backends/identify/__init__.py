"""Identify backend: the reference index kept current by Label Studio annotation webhooks.

``fit.py`` holds the event handling as plain functions (testable without a server);
``model.py`` is a thin ``LabelStudioMLBase`` subclass around them; the auto-label backend can
call the same functions for its identify stage."""
