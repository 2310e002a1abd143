FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY worker ./worker
COPY producers ./producers
COPY sandbox ./sandbox
RUN pip install --no-cache-dir . && useradd --create-home app
USER app
CMD ["ipaas-klaviyo", "worker"]
