"""The Label Studio layer: everything label-factory knows about Label Studio, in one place, used by the jobs
(predict, evaluate, calibrate, export, import, identify, up) and the backends.

Talking to a Label Studio server:

* ``client``: the one client factory (credentials from LABEL_STUDIO_URL / _API_KEY, a sub-path, personal
  access tokens, one client per process) and the only code that touches the SDK's private client;
* ``lsapi``: the one pager (``items``, never a page past the last), ``use_version``, the uncertain tab;
* ``projects``: a project found by its title, one rule;
* ``versions``: keeping a project's model_version equal to the predictions'; ``media``: task images.

Reading and writing Label Studio's JSON (no server):

* ``truth``: the reviewed truth of a task (which annotation, which regions, which boxes), the same for
  evaluate, calibrate, export and identify;
* ``layout.Layout``: a labeling config read once (``Layout.from_config``) and ``Layout.results``;
* ``controls``: one class per output control kind (rectangles, brushes, polygons, per-region names);
* ``regions.read_regions``: results (annotations, interactive context) -> ``Detections``;
* ``interactive``: what a person gave in interactive mode; ``target``: the YAML's labels on a config;
* ``coords`` / ``masks``: the converters, each way; ``labeling_config``: the config generated from a YAML.

It runs no model.
"""
from pipeline.labelstudio.layout import SUPPORTED_OUTPUTS, Layout, UnsupportedConfig
from pipeline.labelstudio.regions import PREDICTED_ORIGINS, read_regions

__all__ = ["Layout", "UnsupportedConfig", "SUPPORTED_OUTPUTS", "PREDICTED_ORIGINS", "read_regions"]
