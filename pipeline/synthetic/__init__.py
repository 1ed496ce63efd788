"""A synthetic world with exact ground truth, for measuring the loop (pre-annotate -> review -> train ->
pre-annotate better) on data a student can learn from, on a CPU.

* ``shapes``: what the objects and their look-alikes are made of (layers of coloured polygons);
* ``world``: seeded photo-like scenes at real sizes (``World(seed).scene(i)``) and their truth boxes;
* ``project``: a world written as a project (images, importer manifest, truth, project YAML) and into a
  real Label Studio the way the importer does it;
* ``teacher``: a SIMULATED foundation cascade (ground truth perturbed by stated miss, false-positive and
  jitter rates, with verify-like scores), standing in where no real weights exist;
* ``annotator``: a SIMULATED annotator who reviews predictions against the truth and writes
  ``lead_time`` from published per-action costs;
* ``reviewed``: synthetic calibration projects (candidate scores and truth), for the calibration
  experiments.

Nothing here is a model: the teacher and the annotator are simulations, and every figure they produce
is labelled as such where it is printed."""
