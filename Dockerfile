# label-factory ML backend.
# CPU (default):  docker build -t label-factory .
# CUDA:           docker build -t label-factory:cuda \
#                   --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#                   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#                 (run with --gpus all; the grounder/VLM pick CUDA when torch sees it)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# extras: ml = transformers/open_clip providers, falcon = Falcon Perception (its torch path needs CUDA),
# train = ultralytics (the student grounder, label-factory train),
# ray = `predict --ray` and the compose file's Ray head/workers (same image)
ARG EXTRAS=ml,falcon,train,ray
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_DIR=/data/models \
    HF_HOME=/data/hf \
    PORT=9090 \
    WORKERS=1 \
    THREADS=32 \
    LOG_LEVEL=INFO \
    PROJECT_CONFIG=/app/projects/stop-signs.yaml

# python3 + venv for CUDA bases (the python image already has them); curl for the healthcheck
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip curl libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY setup.py README.md ./
COPY pipeline ./pipeline
COPY backends ./backends
COPY projects ./projects
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1 \
    && pip install ".[${EXTRAS}]"

RUN useradd --create-home --uid 1000 app && mkdir -p /data/models /data/hf && chown -R app /data
USER 1000
EXPOSE 9090
# with basic auth on, /health needs the credentials too (as in docker-compose.yml)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null -u \"${BASIC_AUTH_USER}:${BASIC_AUTH_PASS}\" http://127.0.0.1:${PORT}/health"]
# gunicorn with backends/gunicorn_conf.py: PORT, WORKERS, THREADS, LOG_LEVEL from the environment
CMD ["python", "-m", "backends._wsgi"]
