# One image for every service of docker-compose.yml: the Prefect server, the pipeline worker, the trainer worker.
# The code lives in /app (the working directory `prefect deploy` records), installed editable so prefect.yaml
# stays beside the packages (the prompt templates live in the top-level prompts/).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/var/lib/prefect \
    SHINE_CACHE_DIR=/cache/llm \
    SHINE_DATA_DIR=/data

# torch comes from PyPI (CUDA build, for the trainer's GPU); pass
# --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu for a CPU-only image
ARG PIP_EXTRA_INDEX_URL=""

WORKDIR /app
COPY pyproject.toml README.md prefect.yaml ./
COPY pipeline ./pipeline
COPY trainer ./trainer
COPY shine ./shine
COPY prompts ./prompts
RUN pip install -e . && mkdir -p /app/artifacts /cache/llm /data /var/lib/prefect

# the healthchecks below call python, so the image needs nothing else (no curl)
CMD ["shine", "--help"]
