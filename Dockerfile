# syntax=docker/dockerfile:1
# Signal Gateway: daphne serving signal_gateway.asgi:application on $PORT (8080).
#
#   docker build -t signal-gateway .
#   docker run -p 8080:8080 -e SECRET_KEY=... -e ENCRYPTION_KEY=... -e DATABASE_URL=... signal-gateway
#
# Needs BuildKit (the default builder since Docker 23) for the bind mount and COPY --chmod below.
# All pinned requirements ship manylinux wheels for CPython 3.11 on x86_64 (cryptography's needs
# glibc >= 2.34, which Debian bookworm and later have), so the builder needs no compiler there.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# builder: resolve and build every wheel once. Nothing from this stage lands in the final image
# except, transiently, through the bind mount of /wheels.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /build
COPY requirements/base.txt requirements/base.txt
RUN pip wheel --wheel-dir /wheels -r requirements/base.txt

# ---------------------------------------------------------------------------------------------
# runtime
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=signal_gateway.settings \
    GATEWAY_VAR_DIR=/app/var \
    BIND=0.0.0.0 \
    PORT=8080

RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin gateway

WORKDIR /app

# Install from the builder's wheels only (--no-index): the wheels are bind-mounted for this one
# RUN, so they never become a layer of the image.
COPY requirements/base.txt requirements/base.txt
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels -r requirements/base.txt

# Only what runs: the Django project, its two apps, manage.py and the entrypoint.
# (tests/, bench/, .ci/ and the dev tooling stay out; .dockerignore keeps them out of the context.)
COPY manage.py manage.py
COPY signal_gateway/ signal_gateway/
COPY ingestion/ ingestion/
COPY pipelines/ pipelines/
COPY --chmod=0755 bin/docker-entrypoint bin/docker-entrypoint

# Static files for the admin, served by whitenoise from $GATEWAY_VAR_DIR/static. collectstatic only
# imports the settings, which need a SECRET_KEY: a throwaway one exists for this RUN alone and is
# not in the image's environment. The code and static files stay root-owned (read-only to the
# gateway user); only $GATEWAY_VAR_DIR itself is writable, for the SQLite file of the demo mode.
RUN SECRET_KEY=build-only-collectstatic-key-not-used-at-runtime \
        python manage.py collectstatic --noinput \
 && python -m compileall -q manage.py signal_gateway ingestion pipelines \
 && chown gateway:gateway "$GATEWAY_VAR_DIR"

USER gateway:gateway

EXPOSE 8080

# Liveness only (/healthz answers while the process serves; /readyz also checks PostgreSQL, Redis
# and Kafka, and belongs to a load balancer, not to a restart policy). No curl in slim: urllib.
# urlopen raises on a refused connection, a timeout or a non-2xx status, so python exits non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]

ENTRYPOINT ["/app/bin/docker-entrypoint"]
