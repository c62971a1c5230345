"""Typed ``backend.options`` of every negatives backend, parsed and checked in one place before any stage runs.

``BackendConfig.options`` stays a plain mapping in the config (it is what YAML and ``--set backend.options.x=v``
give, and what ``manifest.json`` and the stages' fingerprints record); :func:`parse_backend_options` turns it into
the backend's own frozen dataclass (``RandomOptions``, ``LexicalOptions``, ``ImportOptions``, or the LLM backends'
``pipeline.llm.config.LLMConfig``) and refuses an unknown key, a wrong type or a missing value with one line that
names the key, the allowed keys or values and the fix. ``pipeline.config_check.check_config`` calls it for the CLI and at
the start of the flow; ``pipeline.backends.registry`` builds the backend from the parsed options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from shine.configs import ConfigValueError, merge

__all__ = ["OFFLINE_BACKENDS", "RandomOptions", "LexicalOptions", "LEXICAL_MODELS", "SCREEN_COSINE", "ImportOptions",
           "backend_names", "parse_backend_options"]

#: the backends that need no key and no network (``pipeline.backends``); every other name is an LLM backend
OFFLINE_BACKENDS: tuple[str, ...] = ("random", "lexical", "import")


@dataclass(frozen=True)
class RandomOptions:
    """The random baseline takes no options: its draws follow ``backend.seed``, its variant ``backend.model``."""


#: word vectors behind the lexical backend's level grading (``backend.model``)
LEXICAL_MODELS: tuple[str, ...] = ("minilm",)
#: the lexical backend's level-1 screen redraws at or above this MiniLM cosine to a query of the video: the quality
#: report's false-negative threshold (0.95) less a margin for its bf16 scoring (``lexical_screen``)
SCREEN_COSINE = 0.94


@dataclass(frozen=True)
class LexicalOptions:
    """Options of the ``lexical`` backend (``pipeline.backends.lexical``)."""

    min_count: int = 2  # a word joins its tag group once train uses it this often with that tag
    pair_min_count: int = 2  # a verb-object or adjective-noun pair counts as attested from this many sightings
    screen: bool = True  # redraw level-1 negatives MiniLM scores as a query of the video (lexical_screen)
    screen_cosine: float = SCREEN_COSINE  # ... at or above this (the quality report's 0.95 less a bf16 margin)

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.pair_min_count < 1:
            raise ValueError(f"Expected min_count >= 1 and pair_min_count >= 1, got {self.min_count} and "
                             f"{self.pair_min_count}")
        if not 0.0 < self.screen_cosine <= 1.0:
            raise ValueError(f"Expected backend.options.screen_cosine in (0, 1], got {self.screen_cosine}")


@dataclass(frozen=True)
class ImportOptions:
    """Options of the ``import`` backend (``pipeline.backends.imported``)."""

    path: str = ""  # the negatives file: a released-format .jsonl/.json or another run's negatives.parquet


def backend_names() -> list[str]:
    """Every accepted ``backend.name``: the offline backends, then the LLM backends."""
    from pipeline.llm.config import llm_backend_names

    return [*OFFLINE_BACKENDS, *llm_backend_names()]


def _typed(cls: type, options: dict[str, Any], backend: str) -> Any:
    """``options`` merged into ``cls()``; a ConfigError naming the key, the allowed keys and the fix otherwise."""
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no options"
        raise ConfigError(f"backend.options: the {backend} backend {takes}, got {unknown}; drop "
                          f"{'them' if len(unknown) > 1 else 'it'}"
                          + (" (--set backend.options.KEY=VALUE sets an allowed one)" if allowed else ""))
    try:
        return merge(cls(), options, prefix="backend.options.")
    except ConfigValueError as exc:
        raise ConfigError(f"{exc} (the {backend} backend's options: {', '.join(allowed)})") from exc


def parse_backend_options(cfg: Any, check_environment: bool = True) -> Any:
    """The typed options of ``cfg`` (a ``pipeline.config.BackendConfig``), after checking its name and model.

    ``check_environment``: also check what lies outside the config (the import file exists; an LLM backend's API
    key, prompt templates and secret variables are set). Raises :class:`~pipeline.errors.ConfigError` in one line.
    """
    options = dict(cfg.options)
    if cfg.name == "random":
        from pipeline.backends.random_backend import RANDOM_VARIANTS

        if cfg.model not in RANDOM_VARIANTS:
            raise ConfigError(f"backend.model: the random backend's model is one of {list(RANDOM_VARIANTS)}, "
                              f"got {cfg.model!r}")
        return _typed(RandomOptions, options, "random")
    if cfg.name == "lexical":
        # "" or "uniform": the flow's placeholders when no --model was given
        if cfg.model not in ("", "uniform", *LEXICAL_MODELS):
            raise ConfigError(f"backend.model: the lexical backend's model is one of {list(LEXICAL_MODELS)}, "
                              f"got {cfg.model!r}")
        return _typed(LexicalOptions, options, "lexical")
    if cfg.name == "import":
        opts = _typed(ImportOptions, options, "import")
        if not opts.path:
            raise ConfigError("backend.options.path: the import backend needs a file: --set backend.options.path=FILE "
                              "(a released-format .jsonl or a negatives.parquet)")
        if check_environment and not Path(opts.path).expanduser().is_file():
            raise ConfigError(f"backend.options.path: {opts.path} does not exist; pass a released-format .jsonl or a "
                              "negatives.parquet (--set backend.options.path=FILE)")
        return opts
    names = backend_names()
    if cfg.name not in names:
        raise ConfigError(f"backend.name: expected one of {names}, got {cfg.name!r}")
    import pipeline.llm as llm

    if check_environment:
        return llm.check_llm_config(cfg)
    return llm.resolve_limits(llm.parse_llm_config(cfg.name, cfg.model, cfg.seed, options))
