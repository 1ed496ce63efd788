"""The Label Studio output layer: labeling config -> where results go, Detections <-> results,
Label Studio coordinates <-> pixels, masks <-> brush RLE / polygons.

It lives in ``pipeline`` because the batch ``run`` writes Label Studio tasks too; the backends and
the ``predict`` job use it as it is. It talks to no server (the clients are ``pipeline.labelstudio.lsapi`` and
``pipeline.importer.ls_project``) and runs no model.

* ``layout.Layout``: a labeling config read once (``Layout.from_config``) and ``Layout.results``;
* ``controls``: one class per output control kind (rectangles, brushes, polygons, per-region names);
* ``regions.read_regions``: results (annotations, interactive context) -> ``Detections``;
* ``coords`` / ``masks``: the converters, each way.
"""
from pipeline.labelstudio.layout import SUPPORTED_OUTPUTS, Layout, UnsupportedConfig
from pipeline.labelstudio.regions import PREDICTED_ORIGINS, read_regions

__all__ = ["Layout", "UnsupportedConfig", "SUPPORTED_OUTPUTS", "PREDICTED_ORIGINS", "read_regions"]
