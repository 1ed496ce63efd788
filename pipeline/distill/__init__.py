"""Distillation: train a small, fast detector (the *student*) on reviewed Label Studio labels.

The loop: ``label-factory export`` (reviewed annotations, optionally confident predictions as
pseudo-labels -> YOLO or COCO data set with a manifest) -> ``label-factory train`` (ultralytics
YOLO: weights, metrics.json, model card) -> serve the weights as the ``student`` grounder
(pipeline/providers/student.py) -> ``label-factory predict`` relabels the project with it.

Modules: ``split`` (deterministic train/val/test by task id), ``reviewed`` (which annotation or
prediction of a task becomes its labels), ``export`` (images + labels on disk), ``train`` (the training
run and its records), ``promote`` (held-out AP and the promotion rule), ``job`` (a project's training from
Label Studio, export to promotion: Start Training and ``train --project``), ``runs`` (one training at a time
per project, its status, starting one in the background), ``cli`` (the two sub-commands); importing
ultralytics without downloads or telemetry is ``pipeline/providers/yolo.py``'s, shared with the student
grounder."""
FORMATS = ("yolo", "coco")
DEFAULT_MODEL = "yolo11n.pt"
