# One image per kind of box, built once from the same layers (docker-compose.yml picks the target):
#   target `cpu`      the Prefect server, the deployer and the pipeline worker: CPU-only torch (~200 MB, not ~2.5 GB)
#   target `trainer`  the trainer worker: torch from PyPI, which bundles CUDA for the GPU
# The code lives in /app (the working directory `prefect deploy` records), installed editable so prefect.yaml
# stays beside the packages (the prompt templates live in the top-level prompts/). .dockerignore keeps .venv,
# .env, artifacts and .git out of the build context.
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/var/lib/prefect \
    SHINE_CACHE_DIR=/cache/llm \
    SHINE_DATA_DIR=/data

WORKDIR /app
RUN mkdir -p /app/artifacts /cache/llm /data /var/lib/prefect
COPY pyproject.toml README.md prefect.yaml ./
COPY pipeline ./pipeline
COPY trainer ./trainer
COPY shine ./shine
COPY prompts ./prompts

FROM base AS cpu
# torch first from the CPU wheel index, so `pip install -e .` finds it satisfied and never pulls the CUDA build
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch && pip install -e .
# the healthchecks in docker-compose.yml call python, so the image needs nothing else (no curl)
CMD ["shine", "--help"]

FROM base AS trainer
RUN pip install torch && pip install -e .
CMD ["shine", "--help"]
