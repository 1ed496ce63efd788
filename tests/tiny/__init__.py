"""Tiny random-weight models built locally (no hub): saved to a directory and loaded back
through the same from_pretrained / server code production uses."""
