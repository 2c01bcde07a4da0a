# bmad-api: a zero-dependency (stdlib only) Python LLM gateway.
#
# The image holds only the interpreter and the service's own code: no pip, no
# build tools. It runs as the numeric user 10001 and writes only to /data (a
# volume) and /tmp, so it runs unchanged with a read-only root filesystem.
#
#   docker build -t bmad-api .
#   docker run --read-only --tmpfs /tmp -v bmad-data:/data -p 8080:8080 \
#     -e BMAD_API_KEYS=key1:alice:admin -e OPENAI_API_KEY=... bmad-api
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="bmad-api" \
      org.opencontainers.image.description="BMAD LLM gateway (stdlib-only Python)"

ENV BMAD_HOST=0.0.0.0 \
    BMAD_PORT=8080 \
    BMAD_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

# A named account keeps tools that look the user up in /etc/passwd happy; the
# USER below stays numeric so Kubernetes can verify runAsNonRoot.
# --no-log-init: a high UID would otherwise grow /var/log/lastlog by megabytes.
RUN groupadd --system --gid 10001 bmad \
 && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin bmad \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0750 /data

WORKDIR /app

# Code stays root-owned and read-only to the service user.
COPY bmad_api.py ./
COPY bmad/ ./bmad/

# Compile ahead of time: at run time the root filesystem is read-only and
# PYTHONDONTWRITEBYTECODE keeps Python from trying to write __pycache__.
RUN python -m compileall -q /app

VOLUME ["/data"]

EXPOSE 8080

USER 10001:10001

# Exec form, no shell and no curl: urllib raises on a non-2xx answer (503 while
# draining) or a refused connection, and any exception exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BMAD_PORT', '8080') + '/bmad/health', timeout=4).close()"]

ENTRYPOINT ["python", "bmad_api.py"]
