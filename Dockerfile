# The one image behind the receiver, the workers and Flower (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY worker ./worker
COPY producers ./producers
COPY sandbox ./sandbox
RUN pip install ".[flower]" \
    && useradd --create-home --uid 10001 app

# Never root: the service needs no privileges, only its network ports.
USER app
EXPOSE 8080 5555 9108
CMD ["ipaas-klaviyo", "worker"]
