# The chat cluster's node image (docker-compose.yml). Build from the repository root:
#   docker build -t shoal-chat .
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app
COPY pyproject.toml README.md ./
COPY shoal ./shoal
RUN pip install --no-cache-dir .
# The chat example (entities, HTTP/WebSocket handlers, the static page) is
# imported from /app, not installed.
COPY examples/__init__.py ./examples/__init__.py
COPY examples/chat ./examples/chat
USER nobody
EXPOSE 2552 8080 8558
ENTRYPOINT []
CMD ["shoal", "node", "--help"]
