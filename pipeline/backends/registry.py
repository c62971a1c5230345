"""Choosing a backend by name: ``random``, ``lexical`` and ``import`` offline here, every other name from ``pipeline.llm``.

The options were checked before any stage ran (``pipeline.config_check``); here they are parsed again into their
typed dataclass (``pipeline.backends.options``) and handed to the backend.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.backends.base import Backend
from pipeline.backends.options import OFFLINE_BACKENDS, parse_backend_options
from pipeline.backends.random_backend import RandomBackend
from pipeline.config import BackendConfig
from shine.configs import to_dict

__all__ = ["make_backend", "backend_inputs", "OFFLINE_BACKENDS"]


def make_backend(cfg: BackendConfig, dictionary: pd.DataFrame, workdir: Path) -> Backend:
    """Build the backend ``cfg.name`` names; ``dictionary`` is D, ``workdir`` the run's output directory."""
    if cfg.name not in OFFLINE_BACKENDS:
        from pipeline.llm import make_llm_backend

        return make_llm_backend(cfg, dictionary, workdir)
    # the import file's existence is the backend's own check (it names this run's negatives.parquet too)
    options = parse_backend_options(cfg, check_environment=False)
    if cfg.name == "random":
        return RandomBackend(dictionary, seed=cfg.seed, variant=cfg.model)
    if cfg.name == "lexical":
        from pipeline.backends.lexical import LexicalBackend

        # "" or "uniform": the flow's placeholders when no --model was given
        model = "minilm" if cfg.model in ("", "uniform") else cfg.model
        return LexicalBackend.from_run(dictionary, Path(workdir), seed=cfg.seed, model=model, options=to_dict(options))
    from pipeline.backends.imported import ImportBackend

    return ImportBackend.from_options(to_dict(options), Path(workdir))


def backend_inputs(cfg: BackendConfig) -> dict[str, str]:
    """What decides a backend's rows besides the run's tables and its config (part of the negatives fingerprint):
    an imported file's sha256 (editing it recomputes the stage) and the lexical backend's rules version (a rerun
    after an upgrade redraws). Empty for the other backends."""
    if cfg.name == "import" and cfg.options.get("path"):
        from pipeline.tables import sha256_file

        path = Path(str(cfg.options["path"])).expanduser()
        return {"import_file_sha256": sha256_file(path) if path.is_file() else "missing"}
    if cfg.name == "lexical":
        from pipeline.backends.lexical_screen import LEXICAL_RULES

        return {"lexical_rules": LEXICAL_RULES}
    return {}
