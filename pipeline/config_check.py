"""The one check of a pipeline config before any work: the CLI runs it before Prefect starts, the flow before the
load stage, so ``--backend gpt5``, ``--model bogus``, a misspelt ``backend.options`` key or a missing API key fails
in one line before anything is read or written.

It lives beside ``pipeline.config`` rather than in it because it needs the backends (their typed options, the random
variants, the LLM settings), and the backends' own modules import ``pipeline.config``.
"""

from __future__ import annotations

from typing import Any

from pipeline.backends.options import parse_backend_options
from pipeline.config import PipelineConfig, load_config, with_backend

__all__ = ["check_config", "checked_config"]


def check_config(cfg: PipelineConfig) -> PipelineConfig:
    """Check what the dataclasses cannot: the backend's name, model and typed options (``pipeline.backends.options``)
    and, for an LLM backend, its key, prompts and secret variables. Returns ``cfg``; raises a one-line ConfigError."""
    parse_backend_options(cfg.backend, check_environment=True)
    return cfg


def checked_config(dataset: str = "charades-cg", config_file: str | None = None,
                   overrides: dict[str, Any] | None = None, backend: str | None = None,
                   model: str | None = None) -> PipelineConfig:
    """Defaults < dataset preset < YAML file < overrides (with ``--backend`` / ``--model`` folded in), checked.

    >>> checked_config("anet-cg", overrides={"backend": {"seed": 3}}).mask.ratios
    (0.1, 0.3, 0.5)
    """
    return check_config(load_config(dataset, config_file, with_backend(overrides, backend, model)))
