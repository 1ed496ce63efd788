# label-factory ML backend (docs/guides/deploy.md).
# CPU (default):  docker build -t label-factory .
# CUDA:           docker build -t label-factory:cuda \
#                   --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#                   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#                 (run with --gpus all; the grounder/VLM pick CUDA when torch sees it)
# Wheels from a local directory (an offline mirror, a pinned torch build), as an image:
#                 tar -C /path/to/wheels -c . | docker import - label-factory-wheels
#                 docker build --build-arg WHEELS=label-factory-wheels .
#                 (torch comes from there when it holds torch 2.14.1; pip looks there first for the rest)
# Extra CA certificates for pip (a TLS-inspecting proxy), used while building and never stored:
#                 docker build --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt .
# Needs BuildKit (DOCKER_BUILDKIT=1 with Docker 20.10; the default since Docker 23).
ARG BASE_IMAGE=python:3.11-slim
ARG WHEELS=scratch

FROM ${WHEELS} AS wheels

# --- runtime packages, shared by both stages --------------------------------------------------
FROM ${BASE_IMAGE} AS base
# python3 for bases without it (CUDA, plain Debian); curl for the healthcheck; libgl1 and libglib for
# opencv (ultralytics)
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl libgl1 libglib2.0-0 \
    && if ! command -v python3 >/dev/null; then apt-get install -y --no-install-recommends python3; fi \
    && rm -rf /var/lib/apt/lists/*

# --- deps: label-factory's dependencies in a virtualenv (from setup.py alone: a code edit keeps this layer)
FROM base AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# extras: ml = transformers/open_clip providers, falcon = Falcon Perception (its torch path needs CUDA),
# train = ultralytics (the student grounder, label-factory train),
# ray = `predict --ray` and the compose file's Ray head/workers (same image)
ARG EXTRAS=ml,falcon,train,ray
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# python3-venv where `python3 -m venv` lacks ensurepip (Debian and Ubuntu split it off)
RUN if ! python3 -c "import ensurepip" 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY setup.py ./
# torch 2.14.1 from the WHEELS image when it has that file, else from TORCH_INDEX_URL; then the extras
# (pip looks in the WHEELS image too), installed through empty packages so that only setup.py matters here
# hadolint ignore=SC2086
RUN --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=secret,id=ca-certificates \
    set -eu; \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi; \
    python3 -m venv --upgrade-deps /opt/venv; \
    if ls /wheels/torch-2.14.1-*.whl >/dev/null 2>&1; then \
        /opt/venv/bin/pip install --no-deps --no-index --find-links /wheels torch==2.14.1 torchvision==0.29.1; \
        torch_from="--find-links /wheels"; \
    else torch_from="--index-url ${TORCH_INDEX_URL}"; fi; \
    /opt/venv/bin/pip install $torch_from torch==2.14.1 torchvision==0.29.1; \
    mkdir -p /tmp/stub/pipeline /tmp/stub/backends; \
    cp setup.py /tmp/stub/ && touch /tmp/stub/pipeline/__init__.py /tmp/stub/backends/__init__.py; \
    /opt/venv/bin/pip install --find-links /wheels "/tmp/stub[${EXTRAS}]"; \
    /opt/venv/bin/pip uninstall -y label-factory; \
    rm -rf /tmp/stub

# --- wheel: label-factory itself ---------------------------------------------------------------
FROM deps AS wheel
COPY setup.py README.md ./
COPY pipeline ./pipeline
COPY backends ./backends
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi; \
    /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist .

# --- the image: the runtime packages, the virtualenv and label-factory's wheel, nothing else ----
FROM base
ENV PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MODEL_DIR=/data/models \
    HF_HOME=/data/hf \
    PORT=9090 \
    WORKERS=1 \
    THREADS=32 \
    LOG_LEVEL=INFO \
    PROJECT_CONFIG=/app/projects/stop-signs.yaml
RUN useradd --create-home --uid 1000 app && mkdir -p /data/models /data/hf && chown -R app /data
COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=wheel,source=/dist,target=/dist \
    PIP_NO_CACHE_DIR=1 /opt/venv/bin/pip install --no-deps --no-index /dist/label_factory-*.whl
WORKDIR /app
COPY projects ./projects
USER 1000
EXPOSE 9090
# with basic auth on, /health needs the credentials too (as in docker-compose.yml)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null -u \"${BASIC_AUTH_USER}:${BASIC_AUTH_PASS}\" http://127.0.0.1:${PORT}/health"]
# gunicorn with backends/gunicorn_conf.py: PORT, WORKERS, THREADS, LOG_LEVEL from the environment
CMD ["python", "-m", "backends._wsgi"]
