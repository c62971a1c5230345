"""Choosing a backend by name: ``random``, ``lexical`` and ``import`` offline here, every other name from ``pipeline.llm``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.backends.base import Backend
from pipeline.backends.random_backend import RandomBackend
from pipeline.config import BackendConfig
from pipeline.errors import ConfigError

__all__ = ["make_backend", "backend_inputs", "OFFLINE_BACKENDS"]

OFFLINE_BACKENDS: tuple[str, ...] = ("random", "lexical", "import")


def make_backend(cfg: BackendConfig, dictionary: pd.DataFrame, workdir: Path) -> Backend:
    """Build the backend ``cfg.name`` names; ``dictionary`` is D, ``workdir`` the run's output directory."""
    if cfg.name == "random":
        if cfg.options:
            raise ConfigError(f"the random backend takes no options, got {sorted(cfg.options)}")
        return RandomBackend(dictionary, seed=cfg.seed, variant=cfg.model)
    if cfg.name == "lexical":
        from pipeline.backends.lexical import LexicalBackend

        # "" or "uniform": the flow's placeholders when no --model was given
        model = "minilm" if cfg.model in ("", "uniform") else cfg.model
        return LexicalBackend.from_run(dictionary, Path(workdir), seed=cfg.seed, model=model, options=cfg.options)
    if cfg.name == "import":
        from pipeline.backends.imported import ImportBackend

        return ImportBackend.from_options(cfg.options, Path(workdir))
    try:
        from pipeline.llm import make_llm_backend
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("pipeline.llm"):
            raise ConfigError(f"Expected backend in {list(OFFLINE_BACKENDS)}, got {cfg.name!r}") from exc
        raise
    return make_llm_backend(cfg, dictionary, workdir)


def backend_inputs(cfg: BackendConfig) -> dict[str, str]:
    """Files a backend reads besides the run's tables, with their sha256 (part of the negatives fingerprint,
    so editing an imported file recomputes the stage). Empty for backends that read none."""
    if cfg.name == "import" and cfg.options.get("path"):
        from pipeline.tables import sha256_file

        path = Path(str(cfg.options["path"])).expanduser()
        return {"import_file_sha256": sha256_file(path) if path.is_file() else "missing"}
    return {}
