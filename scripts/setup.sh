#!/usr/bin/env bash
# Install label-factory into ./.venv (and Label Studio into ./.venv-ls: its pins clash with ours).
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q -U pip
# torch first, pinned: on this kind of machine the 2.14.1/0.29.1 pair is served from local files.
.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/pip install -q -e ".[ml,mlx,train,ray,dev]"
if [ "${LF_SKIP_LABEL_STUDIO:-0}" != 1 ]; then
  [ -x .venv-ls/bin/python ] || "$PY" -m venv .venv-ls
  .venv-ls/bin/pip install -q -U pip
  .venv-ls/bin/pip install -q "label-studio==1.23.2"
fi
echo "label-factory installed: $(.venv/bin/label-factory --version 2>/dev/null || echo '?')"
