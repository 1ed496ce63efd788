"""``label-factory calibrate``: per-label grounding and verify thresholds and the filter threshold, chosen from
a Label Studio project's reviewed tasks to find the most annotated boxes at a target precision.

1. candidates.py: each reviewed task's image through the project's pipeline with every threshold at 0 (the
   answer cache answers what was asked before), and the annotation it is compared with;
2. search.py: the thresholds, chosen and measured; the held-out check (k-fold cross-validation by task);
3. report.py: which labels were calibrated or refused and why, old vs new, in-sample vs held-out figures;
4. thresholds_file.py: ``<project>.calibration.yaml`` next to the YAML, which ``load_project`` merges.

Not fitted to itself: the figures a team should expect come from tasks the thresholds were not chosen on.
The reviewed tasks are dealt into k folds (seeded, by task, so a task's boxes stay together); for each fold,
thresholds are chosen on the other k-1 folds and precision/recall measured on it. The final thresholds are
chosen on all tasks; their in-sample figures are printed beside the held-out ones, and the gap between the
two says how much the choice leans on the particular tasks reviewed. A label needs ``--min-boxes`` reviewed
boxes (default 30), in at least k tasks, or it is refused and keeps its thresholds."""
FOLDS = 5
MIN_BOXES = 30  # reviewed boxes a label needs (README: Calibrate)
