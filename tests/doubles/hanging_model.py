"""MODEL_CLASS=tests.doubles.hanging_model:Model: a backend whose import never finishes, so it never answers /health."""
import time

time.sleep(3600)
