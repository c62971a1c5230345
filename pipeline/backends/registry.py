"""Choosing a backend by name: ``random`` offline here, every other name from ``pipeline.llm``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.backends.base import Backend
from pipeline.backends.random_backend import RandomBackend
from pipeline.config import BackendConfig
from pipeline.errors import ConfigError

__all__ = ["make_backend", "OFFLINE_BACKENDS"]

OFFLINE_BACKENDS: tuple[str, ...] = ("random",)


def make_backend(cfg: BackendConfig, dictionary: pd.DataFrame, workdir: Path) -> Backend:
    """Build the backend ``cfg.name`` names; ``dictionary`` is D, ``workdir`` the run's output directory."""
    if cfg.name == "random":
        if cfg.options:
            raise ConfigError(f"the random backend takes no options, got {sorted(cfg.options)}")
        return RandomBackend(dictionary, seed=cfg.seed, variant=cfg.model)
    try:
        from pipeline.llm import make_llm_backend
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("pipeline.llm"):
            raise ConfigError(f"Expected backend in {list(OFFLINE_BACKENDS)}, got {cfg.name!r}") from exc
        raise
    return make_llm_backend(cfg, dictionary, workdir)
