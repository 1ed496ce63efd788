# Test-only: Label Studio built on this machine with the paths, user and variables of the official
# heartexlabs/label-studio image, for tests/test_compose_stack.py (CI machines reach no image registry).
# What differs from the official image: docs/guides/deploy.md ("The compose test").
#   docker build -f tests/deploy/label-studio.Dockerfile --build-arg BASE_IMAGE=... tests/deploy
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG LABEL_STUDIO_VERSION=1.23.2
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=secret,id=ca-certificates \
    set -eu; \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi; \
    python3 -m venv --upgrade-deps /label-studio/.venv; \
    /label-studio/.venv/bin/pip install "label-studio==${LABEL_STUDIO_VERSION}"

FROM ${BASE_IMAGE}
# as the official image: /label-studio is home and working directory, the data live in /label-studio/data
ENV LS_DIR=/label-studio \
    HOME=/label-studio \
    LABEL_STUDIO_BASE_DATA_DIR=/label-studio/data \
    OPT_DIR=/opt/heartex/instance-data/etc \
    PATH=/label-studio/.venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=core.settings.label_studio \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR $LS_DIR
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1001 --gid 0 --no-create-home --home-dir /label-studio label-studio \
    && mkdir -p $LABEL_STUDIO_BASE_DATA_DIR $OPT_DIR \
    && chown -R 1001:0 /label-studio $OPT_DIR
COPY --from=build --chown=1001:0 /label-studio/.venv /label-studio/.venv
USER 1001
EXPOSE 8080
CMD ["label-studio"]
