# syntax=docker/dockerfile:1
# The model server: `docker build -t onnx-model-server .`, then
#   docker run --rm -p 8000:8000 --stop-timeout 40 onnx-model-server
# serves the demo models baked into /models; mount your own store there to serve yours.

# ---- build: a virtual environment with the dependencies, then the package itself ----
FROM python:3.11-slim-bookworm AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src
RUN python -m venv /opt/venv

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change,
# not on every code change. The cache mount keeps downloaded wheels between builds.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt

# Then the code: only the app and ml packages (see .dockerignore), installed without dependencies.
COPY README.md ./
COPY app ./app
COPY ml ./ml
# The load-test command ships with the package; it explains that it needs the bench extra.
COPY loadtest ./loadtest
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && python -c "import app.main, ml.store"

# ---- runtime: the same slim Python, the virtual environment, the demo store, no build tools ----
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="onnx-model-server" \
      org.opencontainers.image.description="Serves ONNX models from a versioned model store" \
      org.opencontainers.image.licenses="Apache-2.0"

# Every setting of app/config.py can be overridden at `docker run -e` / in the pod spec.
# HOST must be 0.0.0.0 in a container (127.0.0.1 would only answer from inside it).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MODEL_STORE=/models \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRPC_PORT=8081 \
    WORKERS=1 \
    POLL_INTERVAL_S=2 \
    DRAIN_TIMEOUT_S=30 \
    LOG_LEVEL=info \
    LOG_FORMAT=json

# A fixed, numeric non-root user, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
# The demo models, owned by root and read-only for the server: they are the default content of
# the volume below (Docker copies them into a new named volume; a bind mount or a PVC replaces them).
COPY models_store /models
VOLUME ["/models"]

USER 10001:10001
WORKDIR /home/app
EXPOSE 8000 8081

# No curl in the slim image: the standard library asks /health/live on the configured PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/health/live', timeout=2)"]

# Exec form: the server is PID 1 and gets SIGTERM itself (readiness turns 503, in-flight requests
# get DRAIN_TIMEOUT_S). `docker stop` waits 10 s by default: use --stop-timeout above the drain.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "app"]
