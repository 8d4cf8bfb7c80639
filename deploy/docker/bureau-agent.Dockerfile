# syntax=docker/dockerfile:1
# bureau-agent: rendered from deploy/topology.yaml by `python -m accord.deploy_files --write`.
# Build from the workspace root: docker build -f deploy/docker/bureau-agent.Dockerfile -t accord/bureau-agent .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check uv==${UV_VERSION}
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first, from the lock alone: this layer is rebuilt only when uv.lock changes.
COPY pyproject.toml uv.lock ./
COPY libs/accord/pyproject.toml libs/accord/
COPY services/sanctions-tools/pyproject.toml services/sanctions-tools/
COPY services/bureau-tools/pyproject.toml services/bureau-tools/
COPY services/ledger-tools/pyproject.toml services/ledger-tools/
COPY services/support-tools/pyproject.toml services/support-tools/
COPY services/compliance-tools/pyproject.toml services/compliance-tools/
COPY gateway/pyproject.toml gateway/
COPY services/registry/pyproject.toml services/registry/
COPY services/sanctions-agent/pyproject.toml services/sanctions-agent/
COPY services/bureau-agent/pyproject.toml services/bureau-agent/
COPY services/ledger-agent/pyproject.toml services/ledger-agent/
COPY services/triage-agent/pyproject.toml services/triage-agent/
COPY services/network-agent/pyproject.toml services/network-agent/
COPY services/billing-agent/pyproject.toml services/billing-agent/
COPY services/access-agent/pyproject.toml services/access-agent/
COPY services/drafting-agent/pyproject.toml services/drafting-agent/
COPY services/review-agent/pyproject.toml services/review-agent/
COPY services/orchestrator/pyproject.toml services/orchestrator/
RUN uv sync --frozen --no-dev --no-install-workspace --package bureau-agent
# Code second: the library and this service, installed as packages (no sources needed later).
COPY libs/accord libs/accord
COPY services/bureau-agent services/bureau-agent
RUN uv sync --frozen --no-dev --no-editable --package bureau-agent

FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin accord \
    && install -d -o 10001 -g 10001 /var/lib/accord/publisher /var/lib/accord/gateway /var/lib/accord/trust
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY deploy deploy
COPY agent-cards agent-cards
COPY data data
ENV PATH=/app/.venv/bin:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
ENV PYTHONDONTWRITEBYTECODE=1
ENV PYTHONUNBUFFERED=1
ENV ACCORD_REPO_ROOT=/app
ENV ACCORD_STATE_DIR=/tmp/accord
ENV ACCORD_HOST=0.0.0.0
ENV ACCORD_PORT=8711
ENV ACCORD_GRPC_PORT=8811
USER 10001:10001
EXPOSE 8711 8811
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['ACCORD_PORT'] + '/readyz', timeout=2)"]
CMD ["python", "-m", "bureau_agent"]
