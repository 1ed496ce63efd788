"""Tiny random-weight models built locally (no hub), for tests and `label-factory up --models tiny`:
saved to a directory and loaded back through the same from_pretrained / server code production uses."""
