# newsdedup API/worker image. The same image runs both: the default CMD is the API
# (gunicorn via `newsdedup serve`); docker-compose.yml runs workers with `newsdedup worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Install from the source tree (not editable): the image needs no build tools at run time.
COPY pyproject.toml README.md ./
COPY newsdedup ./newsdedup
COPY service ./service
COPY workers ./workers
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin newsdedup

USER newsdedup

EXPOSE 8000

# Redis is external here (see docker-compose.yml); REDIS_URL must point at it.
ENV REDIS_URL=redis://redis:6379/0

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["newsdedup", "serve", "--host", "0.0.0.0", "--port", "8000"]
