# syntax=docker/dockerfile:1
# SecurePay's image: gunicorn serving "ivr:create_app()" as an unprivileged user.
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" -t securepay .
#
# Two stages: "build" compiles psycopg's C extension against Debian's libpq and installs
# the locked dependencies (requirements.lock, every file checked by its hash) and the
# app into a virtual environment; "runtime" copies that environment alone onto a slim
# base with libpq and nothing to compile with. No test tool, no matplotlib (the "plot"
# extra), no compiler in the final image. The entrypoint is deploy/docker-entrypoint.sh.
# compose.yaml shows it running with PostgreSQL, the migration and the timers' jobs.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libpq-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/securepay/venv
WORKDIR /src
# The dependencies first (their layer is reused until the lock changes), by hash only.
COPY requirements.lock ./
RUN /opt/securepay/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY ivr ./ivr
COPY payments ./payments
COPY callcapture ./callcapture
COPY db ./db
# An image has no .git: the commit it was built from is written beside ivr/version.py.
ARG GIT_COMMIT=""
RUN if [ -n "$GIT_COMMIT" ]; then printf '%s\n' "$GIT_COMMIT" > ivr/BUILD_COMMIT; fi \
 && /opt/securepay/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/securepay/venv/bin/pip install --no-deps /wheels/securepay-*.whl

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 securepay \
 && useradd --system --uid 10001 --gid securepay --home-dir /opt/securepay \
      --no-create-home --shell /usr/sbin/nologin securepay \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/securepay/anchors /var/lib/securepay/exports
COPY --from=build /opt/securepay/venv /opt/securepay/venv
COPY gunicorn.conf.py /opt/securepay/gunicorn.conf.py
COPY deploy/docker-entrypoint.sh /usr/local/bin/securepay-entrypoint
ENV PATH=/opt/securepay/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SECUREPAY_HOME=/opt/securepay \
    SECUREPAY_BIND=0.0.0.0:8000 \
    SECUREPAY_LOG_FORMAT=json
WORKDIR /opt/securepay
USER 10001:10001
EXPOSE 8000
# Liveness only: a database outage must not mark every app container unhealthy (/readyz
# is for the load balancer).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"]
ENTRYPOINT ["securepay-entrypoint"]
CMD ["serve"]
