"""The tests' one set of doubles and factories, each kind in one module:

* ``providers``: models with scripted or known answers behind the real provider interfaces;
* ``images``: images and their encoded bytes; ``regions``: Label Studio result regions;
* ``label_studio``: a fake of the SDK slice the predict jobs use (raising the SDK's own ``ApiError``), webhooks;
* ``servers``: loopback servers that serve files or misbehave; ``openai_server``: an OpenAI-shaped VLM server;
  ``web``: the importer's web APIs replayed; ``subpath_proxy``: Label Studio under a sub-path;
* ``urls``: URL spellings that two parsers read differently;
* ``gated_model``, ``hanging_model``: backend model classes the real-gunicorn tests serve by MODEL_CLASS."""
