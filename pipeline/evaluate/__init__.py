"""``label-factory evaluate``: measure a Label Studio project's predictions against what its annotators
submitted, per model_version and per label (boxes, images, acceptance, calibration, labeling time).

Layout: ``tasks`` reads Label Studio task JSON, ``listing`` fetches it, ``matching`` pairs predicted
with annotated boxes (per-box records, reused by calibration), ``metrics``/``ap``/``calibration``
compute the figures, ``report`` assembles report.json and the terminal tables, ``report_html`` the
HTML page, ``suspects`` the human labels the models strongly disagree with, ``cli`` the command."""
