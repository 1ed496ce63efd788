"""One class per kind of control tag the output layer knows (``layout.py`` builds them from a config)."""
from pipeline.labelstudio.controls.base import Control, OutputControl, attr_true, build_label_map, new_region_id
from pipeline.labelstudio.controls.brushes import Brushes
from pipeline.labelstudio.controls.identity import NameChoice, NameText, PerRegion
from pipeline.labelstudio.controls.polygons import Polygons
from pipeline.labelstudio.controls.rectangles import Rectangles
from pipeline.labelstudio.controls.videorectangles import VideoRectangles

OUTPUTS: tuple[type[OutputControl], ...] = (Rectangles, Brushes, Polygons)
NAMES: tuple[type[PerRegion], ...] = (NameText, NameChoice)

__all__ = ["Control", "OutputControl", "PerRegion", "Rectangles", "Brushes", "Polygons", "VideoRectangles", "NameText",
           "NameChoice",
           "OUTPUTS", "NAMES", "attr_true", "build_label_map", "new_region_id"]
